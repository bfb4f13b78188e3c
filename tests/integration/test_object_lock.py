"""S3 Object Lock against a real SeaweedFS (4.48 implements buckets with Object Lock, object
retention on PUT and multipart uploads, and refuses to delete a locked version): uploads carry
the retention, the sidecar's own keys cannot delete them, retention does not try before the lock
ends, and a bucket without Object Lock stops the daemon at start."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from daemon.manifest import Manifest
from daemon.naming import base_backup_name, manifest_name
from daemon.storage.s3 import content_md5
from daemon.wal.segments import DEFAULT_SEGMENT_SIZE, Segment, format_lsn
from tests.support.pgbackup_cli import artifact_paths, exec_env, log_events, pgbackup

LOCKED_BUCKET = "pgbackup-locked"


@pytest.fixture
def locked_env(s3_server, small_source, tmp_path) -> dict[str, str]:
    s3_server.client().create_bucket(Bucket=LOCKED_BUCKET, ObjectLockEnabledForBucket=True)
    return exec_env(small_source, tmp_path, S3_ENDPOINT_URL=s3_server.endpoint_url, S3_BUCKET=LOCKED_BUCKET,
                    AWS_ACCESS_KEY_ID=s3_server.access_key, AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
                    S3_OBJECT_LOCK_DAYS="2", S3_OBJECT_LOCK_MODE="COMPLIANCE", BACKUP_MIN_SIZE_BYTES="0")


def backup(env: dict, *what: str):
    result = pgbackup("backup", *what, env=env)
    assert result.returncode == 0, result.stderr
    return artifact_paths(result)


class TestObjectLock:
    def test_uploads_are_locked_and_cannot_be_deleted_with_the_sidecars_keys(self, s3_server, locked_env):
        """The artifact and its manifest in S3 carry COMPLIANCE retention until about two days from now,
        and deleting the artifact's version with the sidecar's own credentials is refused."""
        (artifact,) = backup(locked_env, "database", "authdb")
        client = s3_server.client()
        now = datetime.now(UTC)
        for key in (artifact.name, artifact.name + ".manifest.json"):
            retention = client.get_object_retention(Bucket=LOCKED_BUCKET, Key=key)["Retention"]
            assert retention["Mode"] == "COMPLIANCE"
            assert timedelta(days=2) - timedelta(minutes=5) < retention["RetainUntilDate"] - now <= timedelta(days=2)
        version = client.head_object(Bucket=LOCKED_BUCKET, Key=artifact.name)["VersionId"]
        with pytest.raises(ClientError, match="AccessDenied"):
            client.delete_object(Bucket=LOCKED_BUCKET, Key=artifact.name, VersionId=version)

    def test_retention_does_not_try_before_the_lock_ends(self, s3_server, locked_env):
        """A copy the S3 retention would delete (its manifest made 30 days old) but whose lock lasts two
        more days is not deleted: prune logs that the lock holds it and the object stays."""
        (artifact,) = backup(locked_env, "database", "authdb")
        client = s3_server.client()
        manifest_key = artifact.name + ".manifest.json"
        manifest = json.loads(client.get_object(Bucket=LOCKED_BUCKET, Key=manifest_key)["Body"].read())
        for field in ("started_at", "finished_at"):
            manifest[field] = (datetime.fromisoformat(manifest[field]) - timedelta(days=30)).isoformat()
        client.put_object(Bucket=LOCKED_BUCKET, Key=manifest_key, Body=json.dumps(manifest).encode())
        artifact.unlink()
        artifact.with_name(manifest_key).unlink()
        backup(locked_env, "database", "authdb")  # a newer copy, so the minimum kept is not what holds it

        result = pgbackup("prune", env={**locked_env, "S3_RETENTION_DAYS": "1"})
        assert result.returncode == 0, result.stderr
        held = [e for e in log_events(result.stderr) if e.get("event") == "retention_held_by_object_lock"]
        assert [event["key"] for event in held] == [artifact.name]
        (row,) = [line for line in result.stdout.splitlines() if artifact.name in line and " s3 " in line]
        assert row.startswith("keep") and "object lock" in row and "S3 Object Lock until" in row
        assert client.head_object(Bucket=LOCKED_BUCKET, Key=artifact.name)["ContentLength"] > 0

    def test_the_recovery_window_does_not_try_before_the_lock_ends(self, s3_server, locked_env):
        """PITR_WINDOW_DAYS in S3: a base copy and WAL files the window would delete stay while locked, the
        prune output naming the lock; WAL without a lock goes, record and data."""
        backup(locked_env, "database", "authdb")  # the install's identity and its claim on the bucket
        client = s3_server.client()
        now = datetime.now(UTC)
        locked = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": now + timedelta(days=2)}

        def put(key: str, body: bytes, lock: bool = True) -> None:
            client.put_object(Bucket=LOCKED_BUCKET, Key=key, Body=body, ContentMD5=content_md5(body),
                              **(locked if lock else {}))

        bases = []
        for days_ago, start in ((20, 10), (10, 20)):
            finished = now - timedelta(days=days_ago)
            lsn = start * DEFAULT_SEGMENT_SIZE + 0x28
            base = Manifest(kind="base", target="cluster", file=base_backup_name(finished), size_bytes=3, sha256="ab",
                            started_at=finished - timedelta(minutes=1), finished_at=finished, server_version="15.8",
                            format="tar", compression="gzip",
                            details={"start_lsn": format_lsn(lsn), "stop_lsn": format_lsn(lsn + 0x100), "timeline": 1})
            put(base.file, b"tar")
            put(manifest_name(base.file), base.to_json().encode())
            bases.append(base)
        for number in range(5, 23):
            name = Segment(1, number).name
            put(f"wal/{name}.gz", b"wal", lock=number >= 10)
            put(f"wal/{name}.json", b"{}", lock=number >= 10)

        result = pgbackup("prune", env=locked_env)
        assert result.returncode == 0, result.stderr
        keys = {o["Key"] for o in client.list_objects_v2(Bucket=LOCKED_BUCKET)["Contents"]}
        assert bases[0].file in keys and manifest_name(bases[0].file) in keys
        (row,) = [line for line in result.stdout.splitlines() if bases[0].file in line and " s3 " in line]
        assert row.startswith("keep") and "S3 Object Lock until" in row
        wal = {key.removeprefix("wal/") for key in keys if key.startswith("wal/")}
        assert wal == {f"{Segment(1, n).name}{suffix}" for n in range(10, 23) for suffix in (".gz", ".json")}
        held = [line for line in result.stdout.splitlines() if line.startswith("keep") and " wal/" in line
                and "S3 Object Lock until" in line]
        assert held, result.stdout

    def test_a_bucket_without_object_lock_stops_the_start(self, s3_server, locked_env):
        """S3_OBJECT_LOCK_DAYS with a bucket created without Object Lock: `pgbackup run` exits 2 naming the
        variable and the bucket."""
        result = pgbackup("run", env={**locked_env, "S3_BUCKET": s3_server.bucket}, timeout=60)
        assert result.returncode == 2
        assert f"S3_OBJECT_LOCK_DAYS: bucket '{s3_server.bucket}' does not have Object Lock enabled" in result.stderr
