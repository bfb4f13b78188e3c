"""Backups that exist only in S3: listed as restore candidates, and downloaded into
BACKUP_DIR (by a restore, which holds the backup lock) as a hidden partial file, with the
checksum of their manifest checked before the file appears under its name and anything
is restored."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from daemon.errors import PgBackupError
from daemon.logs import get_logger
from daemon.manifest import Manifest, scan_manifests, write_manifest
from daemon.naming import partial_name, plain_name
from daemon.restore.streams import ArtifactDamaged, read_chunks
from daemon.settings import Settings
from daemon.storage.local import fsync_directory

log = get_logger(__name__)


def candidates(settings: Settings) -> list[Manifest]:
    """Every local backup, plus the S3 copies that are not in BACKUP_DIR (when S3 is set up)."""
    local = scan_manifests(settings.backup_dir, settings.signing_key).manifests
    if not settings.offsite_enabled:
        return local
    # Imported here: boto3 costs about 0.4 s of import time, which restores without S3 need not pay.
    from daemon.storage.s3 import S3_ERRORS, Bucket

    try:
        copies = Bucket.from_settings(settings).list_copies()
    except S3_ERRORS + (PgBackupError, ValueError) as error:
        log.warning("offsite_list_failed", error=type(error).__name__)
        return local
    present = {manifest.file for manifest in local}
    # With ENCRYPT_SCOPE=offsite the S3 copy of a local x.sql.gz is x.sql.gz.age: the same backup.
    return local + [copy.manifest for copy in copies
                    if copy.manifest.file not in present and plain_name(copy.manifest.file) not in present]


def ensure_local(settings: Settings, manifest: Manifest) -> Path:
    """The artifact's local path, downloading it from S3 first when it is only there.

    The caller holds the backup lock (``pgbackup restore`` does, for the whole restore).
    """
    path = settings.backup_dir / manifest.file
    if path.exists():
        return path
    if not settings.offsite_enabled:
        raise PgBackupError(f"{path} does not exist (its manifest does)")
    return _download(settings, manifest, path)


def _download(settings: Settings, manifest: Manifest, path: Path) -> Path:
    from daemon.storage.s3 import Bucket  # boto3's import time, as in candidates()

    partial = settings.backup_dir / partial_name(manifest.file)
    log.info("offsite_download_started", file=manifest.file)
    try:
        Bucket.from_settings(settings).download(manifest.file, partial)
        os.chmod(partial, 0o600)
        _check(partial, manifest)
        os.rename(partial, path)
        fsync_directory(settings.backup_dir)
        write_manifest(settings.backup_dir, manifest)
    finally:
        partial.unlink(missing_ok=True)
    log.info("offsite_download_finished", file=manifest.file)
    return path


def _check(path: Path, manifest: Manifest) -> None:
    digest = hashlib.sha256()
    for chunk in read_chunks(path):
        digest.update(chunk)
    if digest.hexdigest() != manifest.sha256:
        raise ArtifactDamaged(f"the S3 copy of {manifest.file} does not match the sha256 in its manifest")
