"""The WAL archive copied to S3 under ``<S3_PREFIX>/wal/``: each archived file, then its record
(the record's presence marks the copy complete, as a manifest does for an artifact). Copied
when offsite copies are on and S3_UPLOAD_KINDS has ``base`` (WAL without base backups, or base
backups without their WAL, restore nothing to a point in time).

A pass every UPLOAD_INTERVAL_SECONDS, in a thread of its own so that a slow S3 never delays the
local archive; a failed upload is logged, counted (``pgbackup_s3_upload_failures_total{kind="wal"}``)
and tried again on the next pass. A local record notes its copy (``offsite_key``); the segment
being received (the .partial) is not copied.

With ENCRYPT_SCOPE=offsite the local archive is plain and each copy is encrypted on its way up
(``<segment>.gz.age``, at most a compressed segment in memory) with a record of its own saying
so, signed again with MANIFEST_SIGNING_KEY.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from daemon.encryption import ENCRYPTION_AGE, Encryption
from daemon.identity import this_instance
from daemon.logs import get_logger
from daemon.monitoring.metrics import Metrics
from daemon.naming import encrypted_name
from daemon.settings import Settings
from daemon.storage.local import replace_file_atomically
from daemon.storage.s3 import Bucket, content_md5, describe
from daemon.storage.s3_claim import ensure_claimed
from daemon.wal.archive import RECORD_SUFFIX, WalRecord, archive_lock, read_records, record_path, wal_dir
from daemon.wal.backoff import Backoff
from daemon.wal.base import KIND as BASE_KIND
from daemon.wal.base import TARGET
from daemon.wal.prune import wal_name_of

log = get_logger(__name__)

UPLOAD_INTERVAL_SECONDS = 5.0
WAL_FOLDER = "wal/"
METRIC_KIND = "wal"


def wanted(settings: Settings) -> bool:
    return settings.offsite_enabled and BASE_KIND in settings.s3_upload_kinds


def wal_key(bucket: Bucket, name: str) -> str:
    return f"{bucket.prefix}{WAL_FOLDER}{name}"


def upload_pending(backup_dir: Path, bucket: Bucket, now: datetime, encryption: Encryption | None = None,
                   signing_key: bytes | None = None) -> list[WalRecord]:
    """Copy every archived WAL file without a copy yet, oldest first; the records copied.
    ``encryption`` (ENCRYPT_SCOPE=offsite): plain archived files are encrypted on their way up."""
    copied = []
    for record in read_records(backup_dir):
        if record.offsite_key:
            continue
        try:
            data = (wal_dir(backup_dir) / record.file).read_bytes()  # at most a segment, compressed
        except FileNotFoundError:
            if not record_path(wal_dir(backup_dir), record.name).exists():
                continue  # deleted by the recovery window's sweep since the records were read
            raise
        remote = record
        if encryption is not None and not record.encrypted:
            data, remote = encrypted_copy(data, record, encryption, signing_key)
        key = wal_key(bucket, remote.file)
        bucket.client.put_object(Bucket=bucket.name, Key=key, Body=data, ContentMD5=content_md5(data),
                                 **bucket.put_options())
        bucket.client.put_object(Bucket=bucket.name, Key=wal_key(bucket, f"{record.name}{RECORD_SUFFIX}"),
                                 Body=remote.to_json().encode("utf-8"), ContentType="application/json",
                                 **bucket.put_options())
        uploaded = replace(record, offsite_key=key, offsite_at=now.isoformat())
        with archive_lock(backup_dir):  # the recovery window's sweep may have deleted it meanwhile
            path = record_path(wal_dir(backup_dir), record.name)
            if not path.exists():
                continue
            replace_file_atomically(path, uploaded.to_json().encode("utf-8"))
        log.info("wal_uploaded", file=record.file, key=key)
        copied.append(uploaded)
    return copied


def encrypted_copy(data: bytes, record: WalRecord, encryption: Encryption,
                   signing_key: bytes | None) -> tuple[bytes, WalRecord]:
    """The age-encrypted bytes of a plain archived file and the record of the copy."""
    blocks: list[bytes] = []
    with encryption.stage(blocks.append) as stage:
        stage.write(data)
        stage.finish()
    encrypted = b"".join(blocks)
    copy = replace(record, file=encrypted_name(record.file), sha256=hashlib.sha256(encrypted).hexdigest(),
                   size_bytes=len(encrypted), encryption=ENCRYPTION_AGE, recipients=tuple(encryption.fingerprints),
                   signature="", offsite_key="", offsite_at="")
    return encrypted, copy.signed(signing_key)


def start_uploader(settings: Settings, metrics: Metrics, cancel: threading.Event) -> threading.Thread | None:
    if not wanted(settings):
        return None
    metrics.s3_upload_failures.labels(METRIC_KIND, TARGET)  # at 0, so that increase() sees a first failure

    def upload_loop() -> None:
        bucket, backoff, wait = None, _retry_backoff(), UPLOAD_INTERVAL_SECONDS
        while not cancel.wait(wait):
            try:
                if bucket is None:  # never into a prefix another install has claimed (storage/s3_claim.py)
                    bucket = Bucket.from_settings(settings)
                    ensure_claimed(bucket, this_instance(settings), datetime.now(settings.timezone))
                upload_pending(settings.backup_dir, bucket, datetime.now(settings.timezone),
                               settings.offsite_encryption, settings.signing_key)
                backoff, wait = _retry_backoff(), UPLOAD_INTERVAL_SECONDS
            except Exception as error:  # noqa: BLE001 - S3 down, a claimed prefix: logged, counted, tried again
                bucket = None
                wait = backoff.delay_after(0)
                metrics.s3_upload_failures.labels(METRIC_KIND, TARGET).inc()
                log.warning("wal_upload_failed", error=describe(error), retry_in_seconds=wait)

    thread = threading.Thread(target=upload_loop, name="wal-upload", daemon=True)
    thread.start()
    return thread


def _retry_backoff() -> Backoff:
    """After failed passes the wait grows from the pass interval to five minutes: S3 down for a day
    logs a line every five minutes, not every five seconds."""
    return Backoff(initial=UPLOAD_INTERVAL_SECONDS, maximum=300)


def offsite_wal_files(bucket: Bucket) -> dict[str, list[str]]:
    """Every WAL name under ``<prefix>/wal/`` with its keys, record first (the order the recovery
    window's sweep deletes them in: a record in S3 marks its copy complete)."""
    folder = bucket.prefix + WAL_FOLDER
    files: dict[str, list[str]] = {}
    for page in bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name, Prefix=folder,
                                                                        Delimiter="/"):
        for item in page.get("Contents", ()):
            name = wal_name_of(item["Key"][len(folder):])
            if name is not None:
                files.setdefault(name, []).append(item["Key"])
    for keys in files.values():
        keys.sort(key=lambda key: not key.endswith(RECORD_SUFFIX))
    return files
