"""How a command reaches the database: its stdout streamed back in chunks, its exit status
checked after the stream ends, and the last lines of its stderr kept for the error."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

CHUNK_SIZE = 1 << 20
CANCEL_POLL_SECONDS = 0.2
STDERR_TAIL_LINES = 20
STDERR_TAIL_BYTES = 8192


class StderrTail:
    """Keeps the last few lines of a process's stderr, in bounded memory."""

    def __init__(self, max_lines: int = STDERR_TAIL_LINES):
        self._lines: deque[bytes] = deque(maxlen=max_lines)
        self._pending = b""
        self._lock = threading.Lock()

    def feed(self, data: bytes) -> None:
        with self._lock:
            *complete, self._pending = (self._pending + data).split(b"\n")
            self._lines.extend(line[:STDERR_TAIL_BYTES] for line in complete)
            self._pending = self._pending[-STDERR_TAIL_BYTES:]

    def lines(self) -> list[str]:
        with self._lock:
            raw = list(self._lines) + ([self._pending] if self._pending else [])
        return [line.decode("utf-8", "replace").rstrip() for line in raw if line.strip()]

    def text(self) -> str:
        return " | ".join(self.lines())


class Transport(Protocol):
    """Runs argv next to the database server (inside its container, or on this host)."""

    description: str
    is_local: bool

    def stream(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, *, cancel: threading.Event | None = None
    ) -> AbstractContextManager[Iterator[bytes]]:
        """Yield an iterator over stdout; on leaving the block the exit status is checked.

        Leaving the block by an exception stops the command. Leaving it normally before
        the iterator was exhausted is an error too: a half-read dump is never a backup.
        A ``cancel`` set while the block runs stops the command too, even one that prints
        nothing (waiting on a lock): its output then ends and the exit status says it failed.
        """

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> bytes:
        """Run to completion and return stdout (for small outputs such as queries)."""


def collect(transport: Transport, argv: Sequence[str], env: Mapping[str, str] | None = None) -> bytes:
    with transport.stream(argv, env) as chunks:
        return b"".join(chunks)


@contextmanager
def stopped_on(cancel: threading.Event | None, stop: Callable[[], None]) -> Iterator[None]:
    """While the block runs, a set ``cancel`` calls ``stop`` from a watching thread.

    The thread that reads a command's output cannot check ``cancel`` itself while it is blocked
    in a read, and a pg_dump waiting on a lock prints nothing for as long as the lock is held:
    without this, a stop would wait for the lock (or for Docker's SIGKILL).
    """
    if cancel is None:
        yield
        return
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if cancel.wait(CANCEL_POLL_SECONDS):
                if not finished.is_set():
                    stop()
                return

    watcher = threading.Thread(target=watch, name="stop-on-cancel", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join(timeout=CANCEL_POLL_SECONDS * 2)
