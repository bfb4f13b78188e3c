"""The local backup directory: artifacts written under a hidden temporary name, hashed as
they stream, fsynced, and renamed into place only when the caller says the data is complete."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType

from daemon.naming import is_partial, is_scratch_dir, partial_name

FILE_MODE = 0o600


class AtomicArtifact:
    """A file that either appears complete under its final name or not at all.

    Use as a context manager; call ``commit()`` once everything is written. Leaving the
    block without commit (an exception, a cancelled run) removes the temporary file;
    ``retract()`` removes a committed file again (its manifest could not be written).
    """

    def __init__(self, directory: Path, final_name: str):
        self.directory = directory
        self.final_path = directory / final_name
        self.partial_path = directory / partial_name(final_name)
        self.size_bytes = 0
        self._sha256 = hashlib.sha256()
        self._fd: int | None = None
        self.committed = False

    def __enter__(self) -> AtomicArtifact:
        if self.final_path.exists():
            raise FileExistsError(f"{self.final_path} already exists; refusing to overwrite a backup")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.partial_path, flags, FILE_MODE)
        return self

    def write(self, data: bytes | memoryview) -> None:
        self._sha256.update(data)
        write_all(self._fd, data)
        self.size_bytes += len(data)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def commit(self) -> Path:
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        if self.final_path.exists():
            raise FileExistsError(f"{self.final_path} appeared while writing; refusing to overwrite it")
        os.rename(self.partial_path, self.final_path)
        fsync_directory(self.directory)
        self.committed = True
        return self.final_path

    def retract(self) -> None:
        """Remove the committed file: it is not a backup after all. Deleting needs no free space."""
        if self.committed:
            self.final_path.unlink(missing_ok=True)
            fsync_directory(self.directory)
            self.committed = False

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self.committed:
            self.partial_path.unlink(missing_ok=True)


def replace_file_atomically(path: Path, data: bytes) -> None:
    """Write a small file (a manifest) so that readers see the old version or the new one;
    on any failure the old version stays and the temporary file is removed."""
    temporary = path.parent / partial_name(path.name)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is written: it may write fewer than asked (a nearly full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.EIO, "write made no progress")
        view = view[written:]


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_backup_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def unwritable_reason(directory: Path) -> str | None:
    """Why this process cannot write backups into ``directory`` (None when it can), with the
    user and group that need the rights: the usual cause is a host directory mounted with
    another owner than the sidecar's unprivileged user."""
    probe = directory / f".pgbackup-write-test-{os.getpid()}"
    try:
        ensure_backup_dir(directory)
        descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(descriptor)
        os.unlink(probe)
        return None
    except OSError as error:
        owner = _owner_of(directory)
        return (f"BACKUP_DIR {directory} is not writable by this process (uid {os.getuid()}, gid {os.getgid()})"
                f"{owner}: {error.strerror or error}. Give uid {os.getuid()} write access to it, e.g. "
                f"chown -R {os.getuid()}:{os.getgid()} on the host directory mounted there")


def _owner_of(directory: Path) -> str:
    try:
        status = directory.stat()
    except OSError:
        return ""
    return f"; it belongs to uid {status.st_uid}, gid {status.st_gid}, mode {status.st_mode & 0o7777:o}"


def leftover_partials(directory: Path) -> list[Path]:
    """Temporary files a crashed run left behind (only ever ours, by their hidden name)."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if is_partial(path.name))


def remove_leftovers(directory: Path) -> list[str]:
    """Remove what a killed run or restore left in ``directory``: partial files and scratch
    directories (ours by their hidden names). Call it holding the backup lock, which every run
    and restore holds while it writes them. Returns the names removed."""
    removed = []
    for path in leftover_partials(directory):
        if not path.is_dir():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    for path in sorted(directory.iterdir()) if directory.is_dir() else ():
        if is_scratch_dir(path.name) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def unused_start_time(directory: Path, name_at: Callable[[datetime], str], clock: Callable[[], datetime]) -> datetime:
    """A start time whose file name (``name_at(time)``) is free in ``directory``: names have
    one-second resolution, so a second run in the same second waits for the next one."""
    while True:
        started = clock()
        if not (directory / name_at(started)).exists():
            return started
        time.sleep(1.05 - started.microsecond / 1_000_000)
