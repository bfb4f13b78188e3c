"""Offsite copies against a real S3-compatible server (SeaweedFS on loopback) and real PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.backup.runner import BackupRunner
from daemon.housekeeping.prune import sweep
from daemon.manifest import Manifest, read_manifest
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.service import equipped_runner
from daemon.settings import Settings
from daemon.storage.s3 import Bucket, OffsiteError
from daemon.storage.s3_claim import CLAIM_NAME
from daemon.storage.s3_upload import MIN_PART_SIZE, MultipartUpload
from tests.support.pgbackup_cli import exec_env, pgbackup
from tests.support.sample_data import seed, server_fingerprints
from tests.support.webhook import RecordingServer

UTC = ZoneInfo("UTC")
DATABASES = ["authdb", "apidb", "admindb"]


def s3_settings(s3_server, backup_dir, secret: str | None = None, **values) -> Settings:
    return Settings(
        postgres_container=values.pop("postgres_container", "pgbackup-test-unused"),
        backup_dir=backup_dir,
        s3_endpoint_url=s3_server.endpoint_url,
        s3_bucket=s3_server.bucket,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=secret or s3_server.secret_key,
        **values,
    )


def open_uploads(s3_server) -> list:
    return s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads", [])


def keys(s3_server) -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket)
    return sorted(item["Key"] for item in listing.get("Contents", ()))


def manifest_for(data: bytes, file: str, days_ago: float = 0, kind: str = "full", target: str = "all") -> Manifest:
    started = datetime.now(UTC) - timedelta(days=days_ago)
    return Manifest(kind=kind, target=target, file=file, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    started_at=started, finished_at=started + timedelta(seconds=2), server_version="15.8",
                    format="plain", compression="gzip", pgbackup_version="0.1.0")


def stream(upload: MultipartUpload, data: bytes) -> None:
    for offset in range(0, len(data), 1024 * 1024):
        upload.write(data[offset:offset + 1024 * 1024])


class TestMultipartUpload:
    def test_streamed_parts_arrive_intact_with_the_manifest_last(self, s3_server, tmp_path):
        """An 11 MiB artifact streamed in 5 MiB parts lands byte for byte, its size checked, then its manifest object."""
        bucket = Bucket.from_settings(s3_settings(s3_server, tmp_path, s3_prefix="/pgbackup/prod/"))
        data = os.urandom(11 * 1024 * 1024 + 17)
        manifest = manifest_for(data, "backup_all_20261126_030000.sql.gz")
        upload = MultipartUpload(bucket, manifest.file, part_size=MIN_PART_SIZE)
        stream(upload, data)
        record = upload.complete(manifest)
        upload.upload_manifest(manifest)
        assert record["status"] == "complete" and record["key"] == "pgbackup/prod/backup_all_20261126_030000.sql.gz"
        body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=record["key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == manifest.sha256
        (copy,) = bucket.list_copies()
        assert copy.manifest == manifest and copy.size_bytes == len(data)
        assert open_uploads(s3_server) == []

    def test_failed_dump_aborts_the_multipart_upload(self, s3_server, tmp_path):
        """When the dump fails after parts were uploaded, abort() leaves no multipart upload and no object."""
        bucket = Bucket.from_settings(s3_settings(s3_server, tmp_path))
        upload = MultipartUpload(bucket, "authdb_20261126_040000.dump", part_size=MIN_PART_SIZE)
        stream(upload, os.urandom(12 * 1024 * 1024))
        upload.abort()
        assert open_uploads(s3_server) == []
        assert keys(s3_server) == []

    @pytest.mark.parametrize(("size", "manifest_bytes"), [
        # one byte more than was sent (the size check in complete() sees it)
        (6 * 1024 * 1024, lambda data: data + b"x"),
        # the right size, the last bit flipped (only the sha256 sees it)
        (11 * 1024 * 1024, lambda data: data[:-1] + bytes([data[-1] ^ 1])),
    ], ids=["other-size", "same-size-other-bytes"])
    def test_bytes_that_differ_from_the_manifest_are_refused_and_aborted(self, s3_server, tmp_path, size,
                                                                         manifest_bytes):
        """Bytes that do not match the manifest's size and sha256 never complete: the upload is aborted."""
        bucket = Bucket.from_settings(s3_settings(s3_server, tmp_path))
        data = os.urandom(size)
        manifest = manifest_for(manifest_bytes(data), "backup_all_20261126_030000.sql.gz")
        upload = MultipartUpload(bucket, manifest.file, part_size=MIN_PART_SIZE)
        stream(upload, data)
        with pytest.raises(OffsiteError, match="sha256"):
            upload.complete(manifest)
        assert open_uploads(s3_server) == [] and keys(s3_server) == []

    def test_a_part_corrupted_in_transit_is_refused_and_aborted(self, s3_server, tmp_path):
        """A part whose bytes change after they were hashed (flipped on the way to the server,
        here by a botocore hook that runs after signing) is refused by the server, and the upload
        is aborted. SeaweedFS does not check SigV4's payload sha256, only Content-MD5."""
        bucket = Bucket.from_settings(s3_settings(s3_server, tmp_path))
        corrupted = []

        def flip_a_byte(request, **kwargs):
            body = request.body.read() if hasattr(request.body, "read") else request.body
            if isinstance(body, bytes) and len(body) >= MIN_PART_SIZE and not corrupted:
                body = bytes([body[0] ^ 0xFF]) + body[1:]
                corrupted.append(len(body))
            request.body = body

        bucket.client.meta.events.register("before-send.s3.UploadPart", flip_a_byte)
        data = os.urandom(11 * 1024 * 1024)
        manifest = manifest_for(data, "backup_all_20261126_030000.sql.gz")
        upload = MultipartUpload(bucket, manifest.file, part_size=MIN_PART_SIZE)
        stream(upload, data)
        with pytest.raises(OffsiteError, match="BadDigest"):
            upload.complete(manifest)
        assert corrupted, "no part went through the corrupting hook"
        assert open_uploads(s3_server) == [] and keys(s3_server) == []

    def test_wrong_credentials_fail_cleanly(self, s3_server, tmp_path):
        """A wrong secret key makes the upload fail with the server's error code and leaves nothing behind."""
        bucket = Bucket.from_settings(s3_settings(s3_server, tmp_path, secret="not-the-secret-key-at-all"))
        data = os.urandom(6 * 1024 * 1024)
        manifest = manifest_for(data, "backup_all_20261126_030000.sql.gz")
        upload = MultipartUpload(bucket, manifest.file, part_size=MIN_PART_SIZE)
        stream(upload, data)
        with pytest.raises(OffsiteError, match="SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
            upload.complete(manifest)
        assert open_uploads(s3_server) == [] and keys(s3_server) == []


@pytest.fixture
def source(postgres_factory):
    server = postgres_factory()
    seed(server)
    return server


def daemon_runner(settings: Settings, docker_client) -> tuple[BackupRunner, Metrics]:
    """The runner as the daemon wires it: every feature installed."""
    metrics = Metrics()
    health = HealthState(datetime.now(UTC), timedelta(hours=24))
    runner, _ = equipped_runner(settings, metrics, health, docker_client=docker_client)
    runner.progress_stream = io.StringIO()
    return runner, metrics


def restore_plain(target, artifact) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"gunzip -c '{artifact}' | docker exec -i {target.name} psql -X -q -U postgres"],
        capture_output=True, text=True, timeout=600, check=False,
    )


class TestOffsiteBackups:
    def test_full_backup_goes_offsite_and_restores_from_the_s3_copy(
        self, source, postgres_factory, s3_server, docker_client, tmp_path
    ):
        """A full backup is streamed to S3 during the dump, recorded in its manifest, listed as both, and the copy
        downloaded from S3 restores into an empty server equal table by table."""
        backup_dir = tmp_path / "backups"
        settings = s3_settings(s3_server, backup_dir, postgres_container=source.name, s3_prefix="prod")
        runner, metrics = daemon_runner(settings, docker_client)
        outcome = runner.run("full")
        assert outcome.ok, outcome.failures
        (manifest,) = outcome.artifacts
        on_disk = read_manifest(backup_dir / f"{manifest.file}.manifest.json")
        assert on_disk.offsite["status"] == "complete" and on_disk.offsite["key"] == f"prod/{manifest.file}"
        assert metrics.registry.get_sample_value(
            "pgbackup_last_offsite_success_timestamp_seconds", {"kind": "full", "target": "all"}
        ) == manifest.started_at.timestamp()
        remote = json.loads(s3_server.client().get_object(
            Bucket=s3_server.bucket, Key=f"prod/{manifest.file}.manifest.json")["Body"].read())
        assert remote["sha256"] == manifest.sha256

        downloaded = tmp_path / "from-s3.sql.gz"
        s3_server.client().download_file(s3_server.bucket, f"prod/{manifest.file}", str(downloaded))
        assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == manifest.sha256
        target = postgres_factory(databases=())
        restored = restore_plain(target, downloaded)
        assert restored.returncode == 0, restored.stderr
        assert server_fingerprints(target, DATABASES) == server_fingerprints(source, DATABASES)

        env = exec_env(source, backup_dir, S3_ENDPOINT_URL=s3_server.endpoint_url, S3_BUCKET=s3_server.bucket,
                       S3_PREFIX="prod", AWS_ACCESS_KEY_ID=s3_server.access_key,
                       AWS_SECRET_ACCESS_KEY=s3_server.secret_key)
        listing = pgbackup("list", "--json", env=env)
        assert listing.returncode == 0, listing.stderr
        assert [(r["file"], r["location"]) for r in json.loads(listing.stdout)] == [(manifest.file, "both")]
        (backup_dir / manifest.file).unlink()
        (backup_dir / f"{manifest.file}.manifest.json").unlink()
        listing = pgbackup("list", env=env)
        assert "offsite" in listing.stdout.splitlines()[1] and manifest.file in listing.stdout

    def test_s3_down_then_back_uploads_the_backlog(self, source, s3_server, docker_client, tmp_path):
        """With S3 down the local backup still succeeds and the failure is counted and notified; once S3 is back
        the next run uploads the new backup and the one that missed its copy."""
        backup_dir = tmp_path / "backups"
        webhook = RecordingServer()
        try:
            settings = s3_settings(s3_server, backup_dir, postgres_container=source.name,
                                   webhook_url=webhook.url("/hook"), notify_timeout_seconds=5)
            runner, metrics = daemon_runner(settings, docker_client)
            s3_server.stop()
            first = runner.run("database", "authdb")
            assert first.ok, first.failures
            (missed,) = first.artifacts
            assert (backup_dir / missed.file).is_file()
            assert read_manifest(backup_dir / f"{missed.file}.manifest.json").offsite["status"] == "failed"
            assert metrics.registry.get_sample_value(
                "pgbackup_s3_upload_failures_total", {"kind": "database", "target": "authdb"}) == 1
            (notice,) = webhook.requests
            assert notice.body["status"] == "failure" and notice.body["offsite_failures"][0]["file"] == missed.file

            s3_server.start()
            second = runner.run("database", "authdb")
            assert second.ok, second.failures
            uploaded = {m.file for m in (missed, *second.artifacts)}
            assert keys(s3_server) == sorted([CLAIM_NAME, *uploaded, *(f"{file}.manifest.json" for file in uploaded)])
            for file in uploaded:
                local = read_manifest(backup_dir / f"{file}.manifest.json")
                assert local.offsite["status"] == "complete"
                body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=file)["Body"].read()
                assert hashlib.sha256(body).hexdigest() == local.sha256
            assert open_uploads(s3_server) == []
        finally:
            webhook.close()

    def test_wrong_credentials_keep_the_local_backup(self, source, s3_server, docker_client, tmp_path):
        """Wrong S3 credentials: the backup still succeeds locally, the failure is counted, nothing is left in the bucket."""
        backup_dir = tmp_path / "backups"
        settings = s3_settings(s3_server, backup_dir, secret="wrong-secret-key-0000000000",
                               postgres_container=source.name)
        runner, metrics = daemon_runner(settings, docker_client)
        outcome = runner.run("database", "apidb")
        assert outcome.ok, outcome.failures
        (manifest,) = outcome.artifacts
        assert hashlib.sha256((backup_dir / manifest.file).read_bytes()).hexdigest() == manifest.sha256
        offsite = read_manifest(backup_dir / f"{manifest.file}.manifest.json").offsite
        assert offsite["status"] == "failed" and "wrong-secret" not in json.dumps(offsite)
        assert metrics.registry.get_sample_value(
            "pgbackup_s3_upload_failures_total", {"kind": "database", "target": "apidb"}) == 1
        assert keys(s3_server) == [] and open_uploads(s3_server) == []


def put_copy(s3_server, bucket: Bucket, file: str, days_ago: float, kind: str = "full", target: str = "all") -> None:
    data = f"{file} {days_ago}".encode()
    manifest = manifest_for(data, file, days_ago, kind, target)
    upload = MultipartUpload(bucket, file)
    upload.write(data)
    upload.complete(manifest)
    upload.upload_manifest(manifest)


def put_foreign(s3_server, key: str, body: bytes = b"someone else's data") -> None:
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=key, Body=body)


class TestOffsiteRetention:
    def test_expired_copies_go_and_nothing_outside_the_prefix_is_touched(self, s3_server, tmp_path):
        """S3 retention deletes expired copies under S3_PREFIX only; the newest copy and foreign keys stay."""
        settings = s3_settings(s3_server, tmp_path, s3_prefix="pgbackup/prod", s3_retention_days=30)
        bucket = Bucket.from_settings(settings)
        put_copy(s3_server, bucket, "backup_all_20261001_030000.sql.gz", 45)
        put_copy(s3_server, bucket, "backup_all_20261124_030000.sql.gz", 2)
        put_copy(s3_server, bucket, "authdb_20260901_040000.dump", 80, "database", "authdb")
        foreign = ["backup_all_20200101_030000.sql.gz", "pgbackup/other/backup_all_20200101_030000.sql.gz",
                   "pgbackup/prod/backup_all_20200102_030000.sql.gz", "pgbackup/prod/nested/old.sql.gz",
                   "pgbackup/production/backup_all_20200101_030000.sql.gz"]
        for key in foreign:
            put_foreign(s3_server, key)
        report = sweep(settings, Metrics(), datetime.now(UTC), open_bucket=lambda: bucket)
        assert [item.file for item in report.deleted if item.location == "s3"] == ["backup_all_20261001_030000.sql.gz"]
        assert keys(s3_server) == sorted(foreign + [
            "pgbackup/prod/authdb_20260901_040000.dump", "pgbackup/prod/authdb_20260901_040000.dump.manifest.json",
            "pgbackup/prod/backup_all_20261124_030000.sql.gz",
            "pgbackup/prod/backup_all_20261124_030000.sql.gz.manifest.json",
        ])

    def test_empty_prefix_deletes_only_keys_with_our_manifest(self, s3_server, tmp_path):
        """With no prefix, only artifacts with this daemon's manifest beside them are candidates; other keys stay."""
        settings = s3_settings(s3_server, tmp_path, s3_prefix="", s3_retention_days=30)
        bucket = Bucket.from_settings(settings)
        put_copy(s3_server, bucket, "backup_all_20261001_030000.sql.gz", 45)
        put_copy(s3_server, bucket, "backup_all_20261124_030000.sql.gz", 1)
        foreign = {
            "backup_all_20200101_030000.sql.gz": b"old dump without manifest",
            "invoices.csv": b"a,b",
            "other.manifest.json": b'{"file": "invoices.csv"}',
            "reports/backup_all_20200101_030000.sql.gz": b"nested",
        }
        for key, body in foreign.items():
            put_foreign(s3_server, key, body)
        metrics = Metrics()
        sweep(settings, metrics, datetime.now(UTC), open_bucket=lambda: bucket)
        assert keys(s3_server) == sorted([*foreign, "backup_all_20261124_030000.sql.gz",
                                          "backup_all_20261124_030000.sql.gz.manifest.json"])
        assert metrics.registry.get_sample_value(
            "pgbackup_retention_deleted_total", {"kind": "full", "location": "s3"}) == 1

    def test_dry_run_deletes_nothing(self, s3_server, tmp_path):
        """A dry run reports the expired copy and leaves the bucket as it was."""
        settings = s3_settings(s3_server, tmp_path, s3_prefix="p")
        bucket = Bucket.from_settings(settings)
        put_copy(s3_server, bucket, "backup_all_20261001_030000.sql.gz", 45)
        put_copy(s3_server, bucket, "backup_all_20261124_030000.sql.gz", 1)
        before = keys(s3_server)
        report = sweep(settings, Metrics(), datetime.now(UTC), dry_run=True, open_bucket=lambda: bucket)
        assert [item.file for item in report.deleted] == ["backup_all_20261001_030000.sql.gz"]
        assert keys(s3_server) == before
