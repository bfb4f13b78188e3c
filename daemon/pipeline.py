"""A bounded hand-off between the thread that reads a dump and the one that compresses,
hashes and writes it, so reading, compressing and writing overlap on separate cores.

At most QUEUE_DEPTH chunks (of at most 1 MiB each) wait between the two threads, so memory
stays flat whatever the size of the dump. An error in the writing thread surfaces in the
reading thread at its next hand-off, which then stops the dump.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from daemon.compression import GzipCompressor

QUEUE_DEPTH = 8
_POLL_SECONDS = 0.5
_END = object()


class PipelinedWriter:
    def __init__(self, write_block: Callable[[bytes], None], compressor: GzipCompressor | None):
        self._write_block = write_block
        self._compressor = compressor
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="artifact-writer", daemon=True)

    def __enter__(self) -> PipelinedWriter:
        self._thread.start()
        return self

    def put(self, chunk: bytes) -> None:
        """Hand a chunk over; blocks while the queue is full, raises the writer's error."""
        while True:
            self._raise_writer_error()
            try:
                self._queue.put(chunk, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Flush the compressor and wait until everything is written."""
        self.put(_END)
        self._thread.join()
        self._raise_writer_error()

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._thread.is_alive():
            self._stopped.set()
            self._thread.join(timeout=30)

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                try:
                    chunk = self._queue.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
                if chunk is _END:
                    if self._compressor is not None:
                        self._write(self._compressor.flush())
                    return
                self._write(self._compressor.compress(chunk) if self._compressor is not None else chunk)
        except BaseException as error:  # handed to the reading thread
            self._error = error

    def _write(self, block: bytes) -> None:
        if block:
            self._write_block(block)
