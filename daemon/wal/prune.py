"""The archive's side of the recovery window's sweep (policy: wal/window.py; the sweep itself
runs with the other retention in housekeeping/prune.py): which WAL names the archive holds with
their files, which the spool still holds, and a name's files deleted.

A name is deleted record first, then its data: a segment counts as archived only while its
record exists, so a sweep that dies in between leaves an orphan ``.gz`` without a record. No
reader sees it (they all start from the records), the archive pass does not look at it (it
archives from the spool only, and removes such a leftover before it writes a file of that name
again), and the next sweep, which plans every name that has any file, deletes it. A record
without its data is never left behind. The caller holds ``archive.archive_lock``.
"""

from __future__ import annotations

from pathlib import Path

from daemon.naming import encrypted_name
from daemon.wal.archive import COMPRESSED_SUFFIX, RECORD_SUFFIX, complete_files, spool_dir, wal_dir
from daemon.wal.segments import is_wal_file

# A name's files, record first: the order they are deleted in.
_SUFFIXES = (RECORD_SUFFIX, encrypted_name(COMPRESSED_SUFFIX), COMPRESSED_SUFFIX)


def wal_name_of(file_name: str) -> str | None:
    """``000000010000000000000003`` for its ``.json``, ``.gz`` or ``.gz.age``; None for any other file."""
    for suffix in _SUFFIXES:
        name = file_name.removesuffix(suffix)
        if name != file_name:
            return name if is_wal_file(name) else None
    return None


def archived_files(backup_dir: Path) -> dict[str, list[Path]]:
    """Every WAL name in BACKUP_DIR/wal/ with its files, record first; hidden files (the spool,
    the lock, a file being written) are not part of it."""
    archive = wal_dir(backup_dir)
    files: dict[str, list[Path]] = {}
    if not archive.is_dir():
        return files
    for path in archive.iterdir():
        if path.name.startswith(".") or not path.is_file():
            continue
        name = wal_name_of(path.name)
        if name is not None:
            files.setdefault(name, []).append(path)
    for paths in files.values():
        paths.sort(key=lambda path: not path.name.endswith(RECORD_SUFFIX))
    return files


def spool_names(backup_dir: Path) -> set[str]:
    """The complete WAL files still in the spool (the newest one pg_receivewal resumes after)."""
    return {path.name for path in complete_files(spool_dir(backup_dir))}


def delete_archived(paths: list[Path]) -> None:
    """Delete one name's files in the order ``archived_files`` gives them: the record first."""
    for path in paths:
        path.unlink(missing_ok=True)
