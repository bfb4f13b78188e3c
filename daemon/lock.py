"""One backup run at a time per backup directory, whether the scheduler or the CLI starts it."""

from __future__ import annotations

import errno
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
    read_only_ok: bool = False,
) -> Iterator[None]:
    """Hold an exclusive flock on BACKUP_DIR/.pgbackup.lock for the duration of the block.

    With ``read_only_ok`` (for commands that only read backups) a directory mounted
    read-only is fine: its lock file is opened for reading and locked all the same, so a
    writer sharing the directory is still kept apart; without a lock file there is no
    writer, and nothing is locked.
    """
    fd, writable = _open_lock_file(directory, read_only_ok)
    if fd is None:
        yield
        return
    try:
        _acquire(fd, directory, wait, on_wait, cancel)
        if writable:
            _note_holder(fd, holder)
        try:
            yield
        finally:
            if writable:
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _note_holder(fd: int, holder: dict) -> None:
    """Write who holds the lock, for the waiting message only: best effort. The flock is the
    lock; on a full BACKUP_DIR the note cannot be written, and `pgbackup prune`, the way to
    free space, must still be able to take the lock."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
    except OSError:
        os.ftruncate(fd, 0)  # never a half-written note; shrinking needs no space


def _open_lock_file(directory: Path, read_only_ok: bool) -> tuple[int | None, bool]:
    """(descriptor, writable); (None, False) for a read-only directory that has no lock file."""
    path = directory / LOCK_FILE
    cloexec = getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | cloexec, 0o600), True
    except OSError as error:
        if not read_only_ok or error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
    try:
        return os.open(path, os.O_RDONLY | cloexec), False
    except FileNotFoundError:
        return None, False


def _acquire(fd: int, directory: Path, wait: bool, on_wait: Callable[[dict], None],
             cancel: threading.Event | None) -> None:
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
