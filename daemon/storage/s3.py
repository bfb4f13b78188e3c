"""S3 offsite copies: a streaming multipart upload, the bucket's listing of our copies, and
deletions that never leave S3_PREFIX.

Layout in the bucket: ``<S3_PREFIX>/<file>`` and, uploaded last, ``<S3_PREFIX>/<file>.manifest.json``.
A copy without its manifest object is incomplete and is never listed or deleted by this daemon.
"""

from __future__ import annotations

import base64
import hashlib
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from daemon.errors import PgBackupError
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.naming import MANIFEST_SUFFIX, manifest_name
from daemon.settings import Settings

log = get_logger(__name__)

PART_SIZE = 8 * 1024 * 1024  # the first parts; keeps the sidecar's memory low while uploading
PARTS_PER_SIZE = 1000  # then the part size doubles every 1,000 parts: S3 allows 10,000 parts,
# and 8 MiB growing this way covers about 8 TB, while dumps under 8 GB never use more than 8 MiB
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
PARTS_IN_FLIGHT = 2  # parts queued for the upload thread; memory stays below (2 + 2) parts
READ_CHUNK = 1024 * 1024
S3_ERRORS = (BotoCoreError, ClientError)


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

    @classmethod
    def from_settings(cls, settings: Settings) -> Bucket:
        return cls(
            client=make_client(settings),
            name=settings.s3_bucket,
            prefix=normalized_prefix(settings.s3_prefix),
            storage_class=settings.s3_storage_class,
            sse=settings.s3_sse,
            sse_kms_key_id=settings.s3_sse_kms_key_id,
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
        return options

    # --- reading back -----------------------------------------------------------------
    def list_copies(self) -> list[OffsiteCopy]:
        """Every complete copy directly under the prefix: an artifact with our manifest beside it."""
        objects: dict[str, int] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.name, Prefix=self.prefix, Delimiter="/"):
            for item in page.get("Contents", ()):
                objects[item["Key"]] = item["Size"]
        copies = []
        for key in sorted(objects):
            if not key.endswith(MANIFEST_SUFFIX) or not key.startswith(self.prefix):
                continue
            manifest = self._read_manifest(key)
            if manifest is None or self.prefix + manifest_name(manifest.file) != key:
                continue
            artifact_key = self.prefix + manifest.file
            if artifact_key in objects:
                copies.append(OffsiteCopy(manifest, artifact_key, key, objects[artifact_key]))
        copies.sort(key=lambda copy: copy.manifest.started_at, reverse=True)
        return copies

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
        self.client.delete_object(Bucket=self.name, Key=copy.artifact_key)
        self.client.delete_object(Bucket=self.name, Key=copy.manifest_key)

    def download(self, file_name: str, destination: Path) -> None:
        self.client.download_file(self.name, self.key(file_name), str(destination))


@dataclass(frozen=True)
class OffsiteCopy:
    manifest: Manifest
    artifact_key: str
    manifest_key: str
    size_bytes: int


class MultipartUpload:
    """A file-like upload of one artifact: ``write()`` fills a part, full parts go to S3 on a
    worker thread while the caller keeps writing, ``complete(manifest)`` finishes the upload,
    checks it against the manifest and uploads the manifest object last. Any failure aborts
    the multipart upload, so no incomplete upload is left in the bucket.

    As a runner sink it never raises from ``write``: an S3 failure must not fail the local
    backup. ``error`` says what went wrong; ``complete`` raises OffsiteError then.
    """

    def __init__(self, bucket: Bucket, file_name: str, part_size: int = PART_SIZE):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.file_name = file_name
        self.key = bucket.key(file_name)
        self.part_size = part_size
        self.error: BaseException | None = None
        self.size_bytes = 0
        self._sha256 = hashlib.sha256()
        self._buffer = bytearray()
        self._parts_cut = 0
        self._upload_id: str | None = None
        self._parts: list[dict] = []
        self._queue: queue.Queue = queue.Queue(maxsize=PARTS_IN_FLIGHT)
        self._worker: threading.Thread | None = None
        self._finished = False

    # --- the sink protocol ------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.error is not None or self._finished:
            return
        self.size_bytes += len(data)
        self._buffer += data
        while len(self._buffer) >= self._next_part_size() and self.error is None:
            size = self._next_part_size()
            with memoryview(self._buffer) as view:
                part = bytes(view[:size])  # one copy (a bytearray slice would be a second)
            del self._buffer[:size]
            self._parts_cut += 1
            self._submit(part)

    def _next_part_size(self) -> int:
        return self.part_size * 2 ** (self._parts_cut // PARTS_PER_SIZE)

    def complete(self, manifest: Manifest) -> dict:
        """Finish the upload and return the offsite record for the manifest; raises OffsiteError."""
        if self._finished:
            raise OffsiteError("upload already finished")
        try:
            if self.error is None:
                self._finish(manifest)
        except S3_ERRORS + (OffsiteError,) as error:
            self.error = self.error or error
        if self.error is not None:
            self.abort()
            raise OffsiteError(f"upload of {self.file_name} failed: {describe(self.error)}") from self.error
        self._finished = True
        return {"status": "complete", "bucket": self.bucket.name, "key": self.key,
                "size_bytes": self.size_bytes, "sha256": manifest.sha256}

    def abort(self) -> None:
        """Stop the worker and abort the multipart upload, if one was started. Never raises."""
        if self._finished:
            return
        self._finished = True
        self._buffer = bytearray()
        self._stop_worker()
        if self._upload_id is not None:
            try:
                self.bucket.client.abort_multipart_upload(
                    Bucket=self.bucket.name, Key=self.key, UploadId=self._upload_id
                )
                log.info("offsite_upload_aborted", key=self.key)
            except S3_ERRORS as error:
                log.error("offsite_abort_failed", key=self.key, error=describe(error))
            self._upload_id = None

    # --- internals --------------------------------------------------------------------
    def _submit(self, part: bytes) -> None:
        try:
            if self._upload_id is None:
                self._start()
        except S3_ERRORS as error:
            self._failed(error)
            return
        while self.error is None:
            try:
                self._queue.put(part, timeout=0.5)
                return
            except queue.Full:
                if self._worker is None or not self._worker.is_alive():
                    return

    def _start(self) -> None:
        created = self.bucket.client.create_multipart_upload(
            Bucket=self.bucket.name, Key=self.key, ContentType="application/octet-stream",
            **self.bucket.put_options(),
        )
        self._upload_id = created["UploadId"]
        self._worker = threading.Thread(target=self._upload_parts, name=f"s3-upload-{self.file_name}", daemon=True)
        self._worker.start()

    def _upload_parts(self) -> None:
        while True:
            part = self._queue.get()
            if part is None or self.error is not None:
                return
            try:
                self._upload_part(part)
            except S3_ERRORS as error:
                self._failed(error)
                return

    def _upload_part(self, part: bytes) -> None:
        # Hashed here, on the upload thread (parts arrive in order), not on the writer thread
        # that also compresses the dump.
        self._sha256.update(part)
        number = len(self._parts) + 1
        response = self.bucket.client.upload_part(
            Bucket=self.bucket.name, Key=self.key, UploadId=self._upload_id, PartNumber=number,
            Body=part, ContentMD5=content_md5(part),
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def _failed(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
            log.error("offsite_upload_failed", key=self.key, error=describe(error))

    def _drain_worker(self) -> None:
        """Let the worker upload every queued part, then end it."""
        if self._worker is None:
            return
        while self._worker.is_alive():
            try:
                self._queue.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self._worker.join()

    def _stop_worker(self) -> None:
        """End the worker at once, dropping the parts not yet uploaded."""
        if self._worker is None:
            return
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        try:
            self._queue.put(None, timeout=5)
        except queue.Full:
            pass
        self._worker.join(timeout=120)

    def _check_against(self, manifest: Manifest) -> None:
        if self._sha256.hexdigest() != manifest.sha256 or self.size_bytes != manifest.size_bytes:
            raise OffsiteError("the bytes sent differ from the manifest's size or sha256")

    def _finish(self, manifest: Manifest) -> None:
        if self.size_bytes != manifest.size_bytes:
            raise OffsiteError("the bytes sent differ from the manifest's size or sha256")
        if self._upload_id is None and len(self._buffer) < self.part_size:
            self._sha256.update(self._buffer)
            self._check_against(manifest)
            self.bucket.client.put_object(
                Bucket=self.bucket.name, Key=self.key, Body=bytes(self._buffer),
                ContentMD5=content_md5(self._buffer), **self.bucket.put_options(),
            )
        else:
            if self._buffer:
                self._submit(bytes(self._buffer))
            self._buffer = bytearray()
            self._drain_worker()
            if self.error is not None:
                return
            self._check_against(manifest)
            self.bucket.client.complete_multipart_upload(
                Bucket=self.bucket.name, Key=self.key, UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
            self._upload_id = None
        head = self.bucket.client.head_object(Bucket=self.bucket.name, Key=self.key)
        if head["ContentLength"] != manifest.size_bytes:
            raise OffsiteError(
                f"the uploaded object has {head['ContentLength']} bytes, the manifest says {manifest.size_bytes}"
            )

    def upload_manifest(self, manifest: Manifest) -> None:
        """The manifest object, uploaded last: its presence marks the copy complete."""
        self.bucket.client.put_object(
            Bucket=self.bucket.name, Key=self.bucket.key(manifest_name(manifest.file)),
            Body=manifest.to_json().encode("utf-8"), ContentType="application/json",
            **self.bucket.put_options(),
        )


def upload_file(bucket: Bucket, path: Path, manifest: Manifest, part_size: int = PART_SIZE) -> dict:
    """Upload a local artifact (the backlog), then its manifest; returns the offsite record."""
    upload = MultipartUpload(bucket, manifest.file, part_size)
    try:
        with path.open("rb") as file:
            for chunk in iter(lambda: file.read(READ_CHUNK), b""):
                upload.write(chunk)
                if upload.error is not None:
                    break
    except OSError as error:
        upload.abort()
        raise OffsiteError(f"cannot read {path.name}: {error.strerror}") from error
    return upload.complete(manifest)


def objects_under(bucket: Bucket) -> Iterable[str]:
    """Every key under the prefix (tests and diagnostics)."""
    paginator = bucket.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket.name, Prefix=bucket.prefix):
        for item in page.get("Contents", ()):
            yield item["Key"]
