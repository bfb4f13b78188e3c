"""One backup run at a time per backup directory, whether the scheduler or the CLI starts it."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from daemon.errors import Cancelled, LockBusy

LOCK_FILE = ".pgbackup.lock"
POLL_SECONDS = 0.5


def read_holder(directory: Path) -> dict:
    """Who holds the lock, as its holder wrote it (best effort, for the waiting message)."""
    try:
        return json.loads((directory / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}


@contextmanager
def backup_lock(
    directory: Path,
    holder: dict,
    *,
    wait: bool = True,
    on_wait: Callable[[dict], None] = lambda holder: None,
    cancel: threading.Event | None = None,
) -> Iterator[None]:
    """Hold an exclusive flock on BACKUP_DIR/.pgbackup.lock for the duration of the block."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        _acquire(fd, directory, wait, on_wait, cancel)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, directory: Path, wait: bool, on_wait, cancel: threading.Event | None) -> None:
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = read_holder(directory)
            if not wait:
                raise LockBusy(f"another backup run holds {directory / LOCK_FILE}: {holder or 'unknown holder'}")
            if not announced:
                on_wait(holder)
                announced = True
        if cancel is not None and cancel.wait(POLL_SECONDS):
            raise Cancelled("cancelled while waiting for the backup lock")
        if cancel is None:
            time.sleep(POLL_SECONDS)
