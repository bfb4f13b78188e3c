"""Offsite copies to S3 (3-2-1): the sinks fed while a backup is written, the backlog, and the
offsite status of each manifest.

Offsite copies stream to S3 while the dump is written (a runner sink). When S3 is down or
refuses the credentials the local backup still counts: the failure is recorded in the
manifest's ``offsite`` field, counted in pgbackup_s3_upload_failures_total, notified, and the
artifact is uploaded by the backlog pass after a later run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from daemon.backup.plans import DumpPlan
from daemon.identity import split_by_owner, this_instance
from daemon.logs import get_logger
from daemon.manifest import Manifest, scan_manifests, write_manifest
from daemon.monitoring.metrics import WHOLE_KIND, Metrics
from daemon.naming import plain_name
from daemon.settings import Settings
from daemon.storage.s3 import S3_ERRORS, Bucket, OffsiteError, describe
from daemon.storage.s3_claim import ensure_claimed
from daemon.storage.s3_encrypted import upload_encrypted_copy
from daemon.storage.s3_upload import MultipartUpload, UploadStopped, upload_file

log = get_logger(__name__)

COMPLETE = "complete"
FAILED = "failed"
DELETED = "deleted"  # the offsite copy expired under S3 retention


class Offsite:
    """Offsite copies for one daemon: the sinks, the backlog and the offsite metrics."""

    def __init__(self, settings: Settings, metrics: Metrics, clock: Callable[[], datetime],
                 bucket: Bucket | None = None, part_size: int | None = None,
                 cancel: threading.Event | None = None):
        self.settings = settings
        self.cancel = cancel or threading.Event()  # a stop ends the backlog between two uploads
        self.metrics = metrics
        self.clock = clock
        self._bucket = bucket
        self.part_size = part_size
        self.failures: list[dict] = []  # of the current run, for its notification
        self._newest_offsite: dict[tuple[str, str], datetime] = {}

    @property
    def bucket(self) -> Bucket:
        if self._bucket is None:
            self._bucket = Bucket.from_settings(self.settings)
        return self._bucket

    def owned_bucket(self) -> Bucket:
        """The bucket, once this install's claim on its prefix is confirmed: another install's
        prefix raises PrefixClaimedElsewhere, which fails the upload (never the local backup)."""
        bucket = self.bucket
        ensure_claimed(bucket, this_instance(self.settings), self.clock())
        return bucket

    def wants(self, kind: str) -> bool:
        return kind in self.settings.s3_upload_kinds

    # --- upload failure counters at 0 -----------------------------------------------------
    # A counter that a failure creates appears already at 1, and increase() in
    # PgBackupOffsiteUploadFailing never sees that failure. The targets known at start-up get
    # theirs then. Without BACKUP_DATABASES the databases are not known before PostgreSQL is
    # asked: their counters are created from the manifests on disk (load_metrics), and a
    # database new since gets its counter when its first dump starts (sinks), which a scrape
    # sees only if that dump takes longer than the scrape interval.
    def declare_known_targets(self) -> None:
        settings = self.settings
        known = [("full", WHOLE_KIND), ("pre_migration", WHOLE_KIND)]
        known += [("database", database) for database in settings.backup_databases]
        known += [("table", database) for database in settings.backup_tables]
        if settings.volume_name:
            known.append(("volume", settings.volume_name))
        for kind, target in known:
            self._declare(kind, target)

    def _declare(self, kind: str, target: str) -> None:
        if self.wants(kind):
            self.metrics.s3_upload_failures.labels(kind, target)

    # --- while a backup is written --------------------------------------------------------
    def sinks(self, plan: DumpPlan, file_name: str) -> list[OffsiteSink | EncryptedCopySink]:
        if not self.wants(plan.kind):
            return []
        self._declare(plan.kind, plan.target)
        if self.settings.offsite_encryption is not None:
            return [EncryptedCopySink(self)]
        return [OffsiteSink(self, file_name)]

    # --- outcomes ----------------------------------------------------------------------
    def succeeded(self, manifest: Manifest, record: dict) -> None:
        manifest.offsite = {**record, "uploaded_at": self.clock().isoformat()}
        log.info("offsite_uploaded", file=manifest.file, key=record["key"], size_bytes=record["size_bytes"])
        self._set_newest(manifest)

    def failed(self, manifest: Manifest, reason: str) -> None:
        manifest.offsite = {"status": FAILED, "error": reason, "failed_at": self.clock().isoformat()}
        self.metrics.s3_upload_failures.labels(manifest.kind, manifest.target).inc()
        self.failures.append({"file": manifest.file, "reason": reason})
        log.error("offsite_upload_failed", file=manifest.file, error=reason)

    def _set_newest(self, manifest: Manifest) -> None:
        key = (manifest.kind, manifest.target)
        if key not in self._newest_offsite or manifest.started_at > self._newest_offsite[key]:
            self._newest_offsite[key] = manifest.started_at
            self.metrics.set_last_offsite_success(manifest)

    def load_metrics(self, manifests: list[Manifest]) -> None:
        for manifest in manifests:
            self._declare(manifest.kind, manifest.target)
            if manifest.offsite.get("status") == COMPLETE:
                self._set_newest(manifest)

    # --- after a run -------------------------------------------------------------------
    def upload_backlog(self, skip: set[str] = frozenset()) -> int:
        """Upload every local artifact not yet off-site, newest first; stops at the first failure
        (S3 is then most likely down: the rest waits for the next run) and, between two uploads,
        at a stop. Returns the uploads."""
        directory = self.settings.backup_dir
        own, _ = split_by_owner(scan_manifests(directory, self.settings.signing_key).manifests, this_instance(self.settings))
        pending = [
            manifest for manifest in own
            if self.wants(manifest.kind) and manifest.offsite.get("status") not in (COMPLETE, DELETED)
            and manifest.file not in skip and (directory / manifest.file).is_file()
        ]
        pending.sort(key=lambda manifest: manifest.started_at, reverse=True)
        uploaded = 0
        for manifest in pending:
            if self.cancel.is_set():
                log.info("offsite_backlog_stopped", reason="a stop was requested", left=len(pending) - uploaded)
                break
            log.info("offsite_backlog_upload", file=manifest.file)
            if not self.upload_existing(directory / manifest.file, manifest):
                break
            uploaded += 1
        return uploaded

    def upload_existing(self, path: Path, manifest: Manifest) -> bool:
        encryption = self.settings.offsite_encryption
        try:
            if encryption is not None and not manifest.encrypted:  # ENCRYPT_SCOPE=offsite
                record = upload_encrypted_copy(self.owned_bucket(), path, manifest, encryption,
                                               self.settings.signing_key, stop=self.cancel, **self._part_size())
            else:
                record = upload_file(self.owned_bucket(), path, manifest, stop=self.cancel, **self._part_size())
                manifest.offsite = dict(record)
                MultipartUpload(self.bucket, manifest.file, **self._part_size()).upload_manifest(manifest)
            manifest.offsite = dict(record)
            self.succeeded(manifest, record)
        except UploadStopped as stopped:  # no failure of S3: the next run's backlog uploads it
            log.warning("offsite_upload_stopped", file=manifest.file, reason=str(stopped))
            return False
        except S3_ERRORS + (OffsiteError, ValueError) as error:
            self.failed(manifest, describe(error))
            write_manifest(self.settings.backup_dir, manifest)
            return False
        write_manifest(self.settings.backup_dir, manifest)
        return True

    def _part_size(self) -> dict[str, int]:
        return {"part_size": self.part_size} if self.part_size else {}


class OffsiteSink:
    """A runner sink: fed the artifact's bytes while they are written; never fails the backup."""

    def __init__(self, offsite: Offsite, file_name: str):
        self.offsite = offsite
        self.file_name = file_name
        self.upload: MultipartUpload | None = None
        self.setup_error = ""
        try:
            # source: past the parts that stream from memory, the rest is read back from the
            # artifact. wait_for_s3=False: a slow S3 never slows the dump (its snapshot and locks
            # would last as long as the upload); the upload catches up from the committed file.
            self.upload = MultipartUpload(offsite.owned_bucket(), file_name, source=offsite.settings.backup_dir / file_name,
                                          wait_for_s3=False, stop=offsite.cancel, **offsite._part_size())
        except Exception as error:  # noqa: BLE001 - e.g. an unusable endpoint URL: the local backup goes on
            self.setup_error = describe(error)

    def write(self, data: bytes) -> None:
        if self.upload is not None:
            self.upload.write(data)

    def abort(self) -> None:
        if self.upload is not None:
            self.upload.abort()

    def complete(self, manifest: Manifest) -> None:
        directory = self.offsite.settings.backup_dir
        try:
            if self.upload is None:
                raise OffsiteError(self.setup_error or "no upload")
            record = self.upload.complete(manifest)
            manifest.offsite = dict(record)
            self.upload.upload_manifest(manifest)  # last: its presence marks the copy complete
            self.offsite.succeeded(manifest, record)
        except UploadStopped as stopped:  # no failure of S3: the backlog uploads it after the restart
            log.warning("offsite_upload_stopped", file=manifest.file, reason=str(stopped))
        except Exception as error:  # noqa: BLE001 - whatever happens, the local backup stands
            self.offsite.failed(manifest, describe(error))
        try:
            write_manifest(directory, manifest)
        except OSError as error:
            log.error("manifest_update_failed", file=manifest.file, error=str(error))


class EncryptedCopySink:
    """A runner sink for ENCRYPT_SCOPE=offsite: nothing streams while the dump runs; once the plain
    artifact is committed (the dump's snapshot and locks are released by then) it is encrypted on
    its way to S3. Never fails the backup: a failure is recorded and the backlog tries again."""

    def __init__(self, offsite: Offsite):
        self.offsite = offsite

    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        pass

    def complete(self, manifest: Manifest) -> None:
        try:
            self.offsite.upload_existing(self.offsite.settings.backup_dir / manifest.file, manifest)
        except Exception as error:  # noqa: BLE001 - e.g. an encryption failure: the local backup stands
            self.offsite.failed(manifest, describe(error))
            try:
                write_manifest(self.offsite.settings.backup_dir, manifest)
            except OSError as write_error:
                log.error("manifest_update_failed", file=manifest.file, error=str(write_error))


def backup_locations(settings: Settings, manifests: list[Manifest]
                     ) -> tuple[list[Manifest], dict[str, str], str | None]:
    """For ``pgbackup list``: local manifests plus offsite-only copies, each file's location
    (local, offsite or both), and a warning when the bucket could not be read."""
    locations = {manifest.file: "local" for manifest in manifests}
    if not settings.offsite_enabled:
        return manifests, locations, None
    try:
        copies = Bucket.from_settings(settings).list_copies()
    except S3_ERRORS + (OffsiteError, ValueError) as error:
        for manifest in manifests:
            if manifest.offsite.get("status") == COMPLETE:
                locations[manifest.file] = "both?"
        return manifests, locations, f"cannot list the S3 copies: {describe(error)}"
    merged = list(manifests)
    for copy in copies:
        local_name = copy.manifest.file if copy.manifest.file in locations else plain_name(copy.manifest.file)
        if local_name in locations:  # the same file, or (ENCRYPT_SCOPE=offsite) its encrypted copy
            locations[local_name] = "both"
        else:
            locations[copy.manifest.file] = "offsite"
            merged.append(copy.manifest)
    merged.sort(key=lambda manifest: manifest.started_at, reverse=True)
    return merged, locations, None
