"""Memory of the S3 upload at any dump size: a real multipart upload to SeaweedFS, with S3's
10,000-part limit scaled down so that a test-sized file reaches it."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pyrage

from daemon.encryption import Encryption, decrypted
from daemon.manifest import Manifest
from daemon.settings import Settings
from daemon.storage import s3_upload
from daemon.storage.s3 import Bucket
from daemon.storage.s3_encrypted import upload_encrypted_copy
from daemon.storage.s3_upload import MIN_PART_SIZE, upload_file

UTC = ZoneInfo("UTC")
MiB = 1024 * 1024


def write_random_file(path, size: int) -> Manifest:
    """A file of ``size`` random bytes, written a MiB at a time, and its manifest."""
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for offset in range(0, size, MiB):
            block = os.urandom(min(MiB, size - offset))
            digest.update(block)
            file.write(block)
    started = datetime.now(UTC)
    return Manifest(kind="full", target="all", file=path.name, size_bytes=size, sha256=digest.hexdigest(),
                    started_at=started, finished_at=started + timedelta(seconds=1), server_version="15.8",
                    format="plain", compression="gzip", pgbackup_version="0.1.0")


class TestBoundedMemory:
    def test_memory_stays_flat_past_the_part_limit(self, s3_server, tmp_path, monkeypatch):
        """With S3's part limit scaled from 10,000 down to 20 (so the old schedule doubled the part size
        every 2 parts instead of every 1,000), a 150 MiB artifact uploaded in 5 MiB parts arrives intact
        while the Python memory held by the upload stays under six parts, far below the artifact's size."""
        monkeypatch.setattr(s3_upload, "MAX_PARTS", 20, raising=False)
        monkeypatch.setattr(s3_upload, "PARTS_PER_SIZE", 2, raising=False)  # the schedule before the fix, scaled alike
        settings = Settings(postgres_container="unused", backup_dir=tmp_path, s3_endpoint_url=s3_server.endpoint_url,
                            s3_bucket=s3_server.bucket, aws_access_key_id=s3_server.access_key,
                            aws_secret_access_key=s3_server.secret_key)
        bucket = Bucket.from_settings(settings)
        path = tmp_path / "backup_all_20261204_030000.sql.gz"
        manifest = write_random_file(path, 150 * MiB)

        tracemalloc.start()
        try:
            record = upload_file(bucket, path, manifest, part_size=MIN_PART_SIZE)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert peak < 6 * MIN_PART_SIZE, f"the upload held {peak / MiB:.0f} MiB at its peak"
        assert record["status"] == "complete"
        head = s3_server.client().head_object(Bucket=s3_server.bucket, Key=record["key"])
        assert head["ContentLength"] == manifest.size_bytes
        body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=record["key"])["Body"]
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(MiB), b""):
            digest.update(chunk)
        assert digest.hexdigest() == manifest.sha256
        if "-" in head["ETag"]:  # a multipart ETag ends in -<number of parts>
            assert int(head["ETag"].strip('"').rsplit("-", 1)[1]) <= 20

    def test_the_uploaders_own_accounting_stays_bounded_while_streaming(self, s3_server, tmp_path, monkeypatch):
        """Streamed through write() as a backup sink is fed, with the part limit scaled down to 20: the bytes the
        uploader holds never pass held_bytes_bound(5 MiB) while 150 MiB go up in 20 parts at most, the parts
        past the streamed ones read back from the local file."""
        monkeypatch.setattr(s3_upload, "MAX_PARTS", 20)
        settings = Settings(postgres_container="unused", backup_dir=tmp_path, s3_endpoint_url=s3_server.endpoint_url,
                            s3_bucket=s3_server.bucket, aws_access_key_id=s3_server.access_key,
                            aws_secret_access_key=s3_server.secret_key)
        bucket = Bucket.from_settings(settings)
        path = tmp_path / "backup_all_20261204_040000.sql.gz"
        manifest = write_random_file(path, 150 * MiB)
        upload = s3_upload.MultipartUpload(bucket, manifest.file, MIN_PART_SIZE, source=path)
        with path.open("rb") as file:
            for chunk in iter(lambda: file.read(MiB), b""):
                upload.write(chunk)
                assert upload.held_bytes <= s3_upload.held_bytes_bound(MIN_PART_SIZE)
        record = upload.complete(manifest)

        assert MIN_PART_SIZE <= upload.peak_held_bytes <= s3_upload.held_bytes_bound(MIN_PART_SIZE)
        assert upload.held_bytes == 0
        assert upload.streamed_bytes == s3_upload.streamed_parts_limit(20) * MIN_PART_SIZE < manifest.size_bytes
        head = s3_server.client().head_object(Bucket=s3_server.bucket, Key=record["key"])
        assert head["ContentLength"] == manifest.size_bytes and record["sha256"] == manifest.sha256
        assert s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads", []) == []


class TestEncryptedCopyMemory:
    def test_an_encrypted_copy_holds_a_few_parts_whatever_the_size(self, s3_server, tmp_path):
        """ENCRYPT_SCOPE=offsite: a 150 MiB plain artifact encrypted on its way up in 5 MiB parts holds less than
        the uploader's bound plus the cipher's queues (far below the artifact's size), and the object in the
        bucket decrypts to exactly the local file."""
        identity = pyrage.x25519.Identity.generate()
        settings = Settings(postgres_container="unused", backup_dir=tmp_path, s3_endpoint_url=s3_server.endpoint_url,
                            s3_bucket=s3_server.bucket, aws_access_key_id=s3_server.access_key,
                            aws_secret_access_key=s3_server.secret_key)
        bucket = Bucket.from_settings(settings)
        path = tmp_path / "backup_all_20261204_050000.sql.gz"
        manifest = write_random_file(path, 150 * MiB)

        tracemalloc.start()
        try:
            record = upload_encrypted_copy(bucket, path, manifest, Encryption((str(identity.to_public()),)), None,
                                           part_size=MIN_PART_SIZE)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        bound = s3_upload.held_bytes_bound(MIN_PART_SIZE) + 10 * MiB  # the cipher: four 1 MiB blocks each side
        assert peak < bound, f"the upload held {peak / MiB:.0f} MiB at its peak"
        assert record["status"] == "complete" and record["key"].endswith(".sql.gz.age")
        encrypted = tmp_path / "copy.age"
        s3_server.client().download_file(s3_server.bucket, record["key"], str(encrypted))
        digest = hashlib.sha256()
        for block in decrypted(_chunks(encrypted), [identity], encrypted.name):
            digest.update(block)
        assert digest.hexdigest() == manifest.sha256


def _chunks(path):
    with path.open("rb") as data:
        while block := data.read(MiB):
            yield block
