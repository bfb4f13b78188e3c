"""Artifact file names: the patterns of the team's runbook, made safe for any database name."""

from __future__ import annotations

import re
import unicodedata
import zlib
from datetime import datetime

STAMP_FORMAT = "%Y%m%d_%H%M%S"
MANIFEST_SUFFIX = ".manifest.json"
PARTIAL_SUFFIX = ".partial"
AGE_SUFFIX = ".age"  # an age-encrypted artifact: the plain name plus .age (daemon/encryption.py)

FORMAT_EXTENSIONS = {
    "custom": ".dump",
    "plain": ".sql.gz",
    "directory": ".dir.tar",
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def stamp(moment: datetime) -> str:
    """The YYYYmmdd_HHMMSS part of a file name, in the moment's own time zone."""
    return moment.strftime(STAMP_FORMAT)


def safe_name(name: str) -> str:
    """A file-name-safe form of a PostgreSQL identifier.

    Plain ASCII names (the common case, e.g. ``authdb``) are kept as they are so
    runbook globs like ``authdb_*.dump`` still work. Any other name is
    transliterated and suffixed with a short checksum of the original, so two
    different names can never map to the same file.
    """
    if name and _UNSAFE.search(name) is None and not name.startswith("."):
        return name
    ascii_form = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_form).strip("._") or "db"
    checksum = zlib.crc32(name.encode("utf-8")) & 0xFFFFFFFF
    return f"{cleaned[:60]}-{checksum:08x}"


def full_backup_name(moment: datetime) -> str:
    return f"backup_all_{stamp(moment)}.sql.gz"


def pre_migration_name(moment: datetime) -> str:
    return f"backup_before_migration_{stamp(moment)}.sql.gz"


def database_backup_name(database: str, dump_format: str, moment: datetime) -> str:
    return f"{safe_name(database)}_{stamp(moment)}{FORMAT_EXTENSIONS[dump_format]}"


def table_backup_name(database: str, dump_format: str, moment: datetime) -> str:
    return f"{safe_name(database)}_tables_{stamp(moment)}{FORMAT_EXTENSIONS[dump_format]}"


def volume_snapshot_name(moment: datetime) -> str:
    return f"postgres_volume_{stamp(moment)}.tar.gz"


def encrypted_name(artifact_name: str) -> str:
    return artifact_name + AGE_SUFFIX


def plain_name(artifact_name: str) -> str:
    """The name of what an encrypted artifact holds: ``backup_all_*.sql.gz`` from ``backup_all_*.sql.gz.age``."""
    return artifact_name.removesuffix(AGE_SUFFIX)


def manifest_name(artifact_name: str) -> str:
    return artifact_name + MANIFEST_SUFFIX


def partial_name(final_name: str) -> str:
    """Hidden while being written, so no glob of finished backups ever matches it."""
    return f".{final_name}{PARTIAL_SUFFIX}"


def is_partial(file_name: str) -> bool:
    return file_name.startswith(".") and file_name.endswith(PARTIAL_SUFFIX)


# Scratch directories in BACKUP_DIR (the TMPDIR of the tools pgbackup runs): a directory-format
# dump before it is sent as a tar, and a directory dump unpacked for pg_restore.
DUMP_SCRATCH_PREFIX = ".pgbackup-dir."
RESTORE_SCRATCH_PREFIX = ".pgbackup-restore-"


def is_scratch_dir(name: str) -> bool:
    return name.startswith((DUMP_SCRATCH_PREFIX, RESTORE_SCRATCH_PREFIX))


def base_backup_name(moment: datetime) -> str:
    return f"base_{stamp(moment)}.tar.gz"
