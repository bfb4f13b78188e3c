"""A real, small file system for disk-full tests: a tmpfs with ``size=`` (the tests run as root)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILLER = "filler.bin"  # a plain name: nothing of the daemon's, never deleted by retention


@contextmanager
def tmpfs(mount_point: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` at ``mount_point`` for the duration of the block, then unmounted."""
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs", str(mount_point)],
                   check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(directory: Path) -> Path:
    """Write a filler file in ``directory`` until the file system says ENOSPC: 100 % full."""
    path = directory / FILLER
    block = b"\0" * (1024 * 1024)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            try:
                os.write(fd, block if free_bytes(directory) >= len(block) else block[:4096])
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    assert free_bytes(directory) == 0
    return path
