"""S3 offsite copies: the client, the bucket's listing of our copies, downloads, and deletions
that never leave S3_PREFIX (the streaming upload is s3_upload.py).

Layout in the bucket: ``<S3_PREFIX>/<file>`` and, uploaded last, ``<S3_PREFIX>/<file>.manifest.json``.
A copy without its manifest object is incomplete and is never listed or deleted by this daemon.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from daemon.errors import PgBackupError, SettingsError
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.naming import MANIFEST_SUFFIX, manifest_name
from daemon.settings import Settings

log = get_logger(__name__)

S3_ERRORS = (BotoCoreError, ClientError)
# What S3 and SeaweedFS answer for a bucket or object without Object Lock.
OBJECT_LOCK_NOT_CONFIGURED = ("ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration",
                              "InvalidRequest")


class OffsiteError(PgBackupError):
    """An offsite upload or listing failed; the local backup is not affected."""


def make_client(settings: Settings) -> BaseClient:
    """A boto3 S3 client from the settings; credentials fall back to boto3's own chain."""
    options = {
        "region_name": settings.s3_region,
        "config": Config(
            s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            # Many S3-compatible stores reject the newer default checksum headers; parts carry
            # Content-MD5 instead. Not every store checks the payload sha256 that SigV4 signs
            # (SeaweedFS does not), while S3 and SeaweedFS both check Content-MD5
            # (tests/integration/test_s3_offsite.py), so it stays at the cost of a second hash.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    }
    if settings.s3_endpoint_url:
        options["endpoint_url"] = settings.s3_endpoint_url
    if settings.aws_access_key_id is not None and settings.aws_secret_access_key is not None:
        options["aws_access_key_id"] = settings.aws_access_key_id.get_secret_value()
        options["aws_secret_access_key"] = settings.aws_secret_access_key.get_secret_value()
    return boto3.client("s3", **options)


def content_md5(data: bytes) -> str:
    """The Content-MD5 header's value: the base64 of the body's MD5."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def normalized_prefix(prefix: str) -> str:
    """``/pgbackup/prod/`` -> ``pgbackup/prod/``; empty stays empty."""
    cleaned = prefix.strip().strip("/")
    return f"{cleaned}/" if cleaned else ""


def describe(error: BaseException) -> str:
    """An S3 error in one line: the error code and message, never credentials or URLs."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}".strip().rstrip(":")
    return type(error).__name__ + (f": {error}" if isinstance(error, (BotoCoreError, OffsiteError)) else "")


@dataclass(frozen=True)
class Bucket:
    """Where the copies go: a client, the bucket, the prefix and the upload options."""

    client: object
    name: str
    prefix: str
    storage_class: str | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None
    signing_key: bytes | None = field(default=None, repr=False)  # MANIFEST_SIGNING_KEY: others' manifests are foreign
    object_lock_days: int | None = None  # S3_OBJECT_LOCK_DAYS: every upload retained this long
    object_lock_mode: str = "GOVERNANCE"

    @classmethod
    def from_settings(cls, settings: Settings) -> Bucket:
        return cls(
            client=make_client(settings),
            name=settings.s3_bucket,
            prefix=normalized_prefix(settings.s3_prefix),
            storage_class=settings.s3_storage_class,
            sse=settings.s3_sse,
            sse_kms_key_id=settings.s3_sse_kms_key_id,
            signing_key=settings.signing_key,
            object_lock_days=settings.s3_object_lock_days,
            object_lock_mode=settings.s3_object_lock_mode,
        )

    def key(self, file_name: str) -> str:
        if "/" in file_name or file_name in ("", ".", ".."):
            raise OffsiteError(f"{file_name!r} is not a plain file name")
        return self.prefix + file_name

    def url(self, file_name: str) -> str:
        return f"s3://{self.name}/{self.key(file_name)}"

    def put_options(self) -> dict:
        options = {}
        if self.storage_class:
            options["StorageClass"] = self.storage_class
        if self.sse:
            options["ServerSideEncryption"] = self.sse
        if self.sse == "aws:kms" and self.sse_kms_key_id:
            options["SSEKMSKeyId"] = self.sse_kms_key_id
        if self.object_lock_days:
            # Not even these credentials can delete the object (in COMPLIANCE mode: nobody can) before then.
            options["ObjectLockMode"] = self.object_lock_mode
            options["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=self.object_lock_days)
        return options

    # --- object lock ------------------------------------------------------------------
    def check_object_lock(self) -> None:
        """SettingsError unless the bucket has Object Lock enabled (only a bucket created with it can)."""
        try:
            configuration = self.client.get_object_lock_configuration(Bucket=self.name)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code not in OBJECT_LOCK_NOT_CONFIGURED:
                raise
            configuration = {}
        if configuration.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise SettingsError([f"S3_OBJECT_LOCK_DAYS: bucket {self.name!r} does not have Object Lock enabled; "
                                 "create a bucket with it (aws s3api create-bucket --object-lock-enabled-for-bucket) "
                                 "or unset S3_OBJECT_LOCK_DAYS"])

    def locked_until(self, key: str) -> datetime | None:
        """When the object's Object Lock retention ends; None when it has none."""
        try:
            retention = self.client.get_object_retention(Bucket=self.name, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code", "") in OBJECT_LOCK_NOT_CONFIGURED:
                return None
            raise
        return retention.get("Retention", {}).get("RetainUntilDate")

    # --- reading back -----------------------------------------------------------------
    def list_copies(self) -> list[OffsiteCopy]:
        """Every complete copy directly under the prefix: an artifact with our manifest beside it."""
        return self.scan_copies()[0]

    def scan_copies(self) -> tuple[list[OffsiteCopy], list[str]]:
        """(every complete, trusted copy directly under the prefix, the manifest keys that are
        foreign under MANIFEST_SIGNING_KEY: unsigned or badly signed)."""
        objects: dict[str, int] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.name, Prefix=self.prefix, Delimiter="/"):
            for item in page.get("Contents", ()):
                objects[item["Key"]] = item["Size"]
        copies, forged = [], []
        for key in sorted(objects):
            if not key.endswith(MANIFEST_SUFFIX) or not key.startswith(self.prefix):
                continue
            manifest = self._read_manifest(key)
            if manifest is None or self.prefix + manifest_name(manifest.file) != key:
                continue
            problem = manifest.signature_problem(self.signing_key)
            if problem is not None:  # foreign: never restored, counted or deleted
                log.error("manifest_tampered", key=key, location="s3", problem=problem)
                forged.append(key)
                continue
            artifact_key = self.prefix + manifest.file
            if artifact_key in objects:
                copies.append(OffsiteCopy(manifest, artifact_key, key, objects[artifact_key]))
        copies.sort(key=lambda copy: copy.manifest.started_at, reverse=True)
        return copies, forged

    def _read_manifest(self, key: str) -> Manifest | None:
        body = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        try:
            text = body.decode("utf-8")
            if '"schema_version"' not in text or '"sha256"' not in text:
                return None
            return Manifest.from_json(text)
        except (ValueError, KeyError, TypeError):
            log.warning("offsite_manifest_unreadable", key=key)
            return None

    def delete_copy(self, copy: OffsiteCopy) -> None:
        """Delete an artifact object, then its manifest object (both inside the prefix)."""
        for key in (copy.artifact_key, copy.manifest_key):
            if not key.startswith(self.prefix) or "/" in key[len(self.prefix):]:
                raise OffsiteError(f"refusing to delete {key!r}: outside the prefix {self.prefix!r}")
        for key in (copy.artifact_key, copy.manifest_key):
            self._delete_current_version(key)

    def delete_in_folder(self, folder: str, key: str) -> None:
        """Delete ``key``, a plain name directly under ``<prefix><folder>`` (such as ``wal/``), for
        good; anything else is refused."""
        inside = self.prefix + folder
        if not folder.endswith("/") or not key.startswith(inside) or "/" in key[len(inside):] or key == inside:
            raise OffsiteError(f"refusing to delete {key!r}: not directly under {inside!r}")
        self._delete_current_version(key)

    def _delete_current_version(self, key: str) -> None:
        """Delete ``key``'s current version for good. In a versioned bucket a plain DELETE only
        adds a delete marker: the bytes stay (and cost) as a noncurrent version, and the copy
        would be counted as deleted while it is not. Deleting by version id removes exactly the
        object this daemon listed; other versions of the key are left alone."""
        version = self.client.head_object(Bucket=self.name, Key=key).get("VersionId")
        if version:
            self.client.delete_object(Bucket=self.name, Key=key, VersionId=version)
        else:
            self.client.delete_object(Bucket=self.name, Key=key)

    def download(self, file_name: str, destination: Path) -> None:
        self.client.download_file(self.name, self.key(file_name), str(destination))


@dataclass(frozen=True)
class OffsiteCopy:
    manifest: Manifest
    artifact_key: str
    manifest_key: str
    size_bytes: int


def objects_under(bucket: Bucket) -> Iterable[str]:
    """Every key under the prefix (tests and diagnostics)."""
    paginator = bucket.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket.name, Prefix=bucket.prefix):
        for item in page.get("Contents", ()):
            yield item["Key"]
