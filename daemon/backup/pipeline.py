"""A bounded hand-off between the thread that reads a dump and the one that writes it, with
compression on a pool of threads in between, so reading, compressing and writing overlap on
every core.

Uncompressed, each chunk read goes to the writer thread as it is. Compressed, chunks are
gathered into blocks of BLOCK_SIZE, each block is compressed into one gzip member on the pool,
and the writer thread writes the members in the order of the blocks. At most QUEUE_DEPTH chunks,
or BLOCKS_PER_THREAD blocks per compression thread, wait between reader and writer, so memory
stays flat whatever the size of the dump. An error in the writer or in a compression thread surfaces in
the reading thread at its next hand-off, which then stops the dump.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from daemon.backup.compression import BLOCK_SIZE, Gzip

QUEUE_DEPTH = 8  # uncompressed chunks of at most 1 MiB each
BLOCKS_PER_THREAD = 2  # compressed: blocks in flight per compression thread
_POLL_SECONDS = 0.5
_END = object()


class PipelinedWriter:
    def __init__(self, write_block: Callable[[bytes], None], gzip: Gzip | None):
        self._write_block = write_block
        self._gzip = gzip
        self._pool: ThreadPoolExecutor | None = None
        depth = QUEUE_DEPTH
        if gzip is not None:
            depth = BLOCKS_PER_THREAD * gzip.thread_count
            self._pool = ThreadPoolExecutor(gzip.thread_count, thread_name_prefix="gzip")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._blocks = 0
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="artifact-writer", daemon=True)

    def __enter__(self) -> PipelinedWriter:
        self._thread.start()
        return self

    def put(self, chunk: bytes) -> None:
        """Hand a chunk over; blocks while the queue is full, raises the writer's error."""
        if self._gzip is None:
            self._hand_over(chunk)
            return
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= BLOCK_SIZE:
            self._compress_pending()

    def finish(self) -> None:
        """Compress what is left, and wait until everything is written."""
        if self._gzip is not None and (self._pending_bytes or self._blocks == 0):
            self._compress_pending()  # an empty dump still becomes a valid (empty) gzip file
        self._hand_over(_END)
        self._thread.join()
        self._raise_writer_error()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._thread.is_alive():
            self._stopped.set()
            self._thread.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _compress_pending(self) -> None:
        block = b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        self._blocks += 1
        self._raise_writer_error()
        self._hand_over(self._pool.submit(self._gzip.member, block))

    def _hand_over(self, item: object) -> None:
        while True:
            self._raise_writer_error()
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                try:
                    item = self._queue.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                self._write(item.result() if isinstance(item, Future) else item)
        except BaseException as error:  # handed to the reading thread
            self._error = error

    def _write(self, block: bytes) -> None:
        if block:
            self._write_block(block)
