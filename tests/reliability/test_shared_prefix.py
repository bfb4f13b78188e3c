"""Item 1: two installs pointed at one S3 bucket and prefix must not mix their backups.

Before: the second install's copies landed beside the first's (same names at the same second
overwrote each other), retention grouped both installs' copies and expired one by the other's
dates, and `restore --latest` restored the other cluster's database without a word. Real
PostgreSQL containers (one per install), a real SeaweedFS, the real `pgbackup` command.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.identity import INSTANCE_ID_FILE
from daemon.manifest import Manifest, read_manifest
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.naming import full_backup_name, manifest_name
from daemon.service import S3_CLAIM_PROBLEM, check_s3_claim, equipped_runner
from daemon.settings import Settings
from daemon.storage.s3_claim import CLAIM_NAME
from tests.support.pgbackup_cli import exec_env, log_events, pgbackup
from tests.support.webhook import RecordingServer

PREFIX = "shared"
UTC = ZoneInfo("UTC")


def s3_env(server, s3_server, backup_dir: Path, **settings: str) -> dict[str, str]:
    return exec_env(server, backup_dir, S3_ENDPOINT_URL=s3_server.endpoint_url, S3_BUCKET=s3_server.bucket,
                    S3_PREFIX=PREFIX, AWS_ACCESS_KEY_ID=s3_server.access_key,
                    AWS_SECRET_ACCESS_KEY=s3_server.secret_key, **settings)


def bucket_keys(s3_server) -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=f"{PREFIX}/")
    return sorted(item["Key"] for item in listing.get("Contents", ()))


def only_manifest(directory: Path) -> Manifest:
    (path,) = directory.glob("*.manifest.json")
    return read_manifest(path)


def put_copy(s3_server, instance: str, days_ago: int) -> str:
    """An old full backup of ``instance`` straight into the bucket: artifact, then manifest."""
    started = (datetime.now(UTC) - timedelta(days=days_ago)).replace(microsecond=0)
    name = full_backup_name(started)
    data = f"{instance} {days_ago}".encode() * 50
    manifest = Manifest(
        kind="full", target="all", file=name, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
        started_at=started, finished_at=started + timedelta(seconds=2), server_version="15.8", format="plain",
        compression="gzip", instance=instance,
    )
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key=f"{PREFIX}/{name}", Body=data)
    client.put_object(Bucket=s3_server.bucket, Key=f"{PREFIX}/{manifest_name(name)}", Body=manifest.to_json().encode())
    return name


def claim(s3_server, instance: str) -> None:
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=f"{PREFIX}/{CLAIM_NAME}",
                                  Body=json.dumps({"instance": instance}).encode())


@pytest.fixture
def clusters(postgres_factory):
    """Two clusters: production (install A) and staging (install B), each with its own marker."""
    production = postgres_factory()
    staging = postgres_factory()
    for server, marker in ((production, "production-row"), (staging, "staging-row")):
        server.psql(f"CREATE TABLE marker (what text); INSERT INTO marker VALUES ('{marker}')", db="authdb")
    return production, staging


class TestTwoInstallsOnePrefix:
    def test_the_second_install_uploads_nothing_and_says_whose_prefix_it_is(self, clusters, s3_server, tmp_path):
        """Install A claims the prefix with its first copy. Install B's backup still succeeds locally, but
        its copy is refused: the bucket holds A's objects only, unchanged, and B's manifest, log and
        notification name the owner and what to set."""
        production, staging = clusters
        dir_a, dir_b = tmp_path / "a", tmp_path / "b"
        first = pgbackup("backup", "full", env=s3_env(production, s3_server, dir_a, INSTANCE_NAME="production"))
        assert first.returncode == 0, first.stderr
        assert only_manifest(dir_a).offsite["status"] == "complete"
        assert only_manifest(dir_a).instance == "production"
        before = {key: s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)["ETag"]
                  for key in bucket_keys(s3_server)}
        assert f"{PREFIX}/{CLAIM_NAME}" in before

        webhook = RecordingServer()
        try:
            second = pgbackup("backup", "full", env=s3_env(staging, s3_server, dir_b, WEBHOOK_URL=webhook.url("/h")))
        finally:
            webhook.close()

        assert second.returncode == 0, second.stderr  # the local backup stands
        generated = (dir_b / INSTANCE_ID_FILE).read_text().strip()
        manifest_b = only_manifest(dir_b)
        assert manifest_b.instance == generated and (dir_b / manifest_b.file).is_file()
        assert manifest_b.offsite["status"] == "failed"
        assert "belongs to the install 'production'" in manifest_b.offsite["error"]
        assert "S3_PREFIX" in manifest_b.offsite["error"]
        after = {key: s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)["ETag"]
                 for key in bucket_keys(s3_server)}
        assert after == before
        failed = [e for e in log_events(second.stdout + second.stderr) if e.get("event") == "offsite_upload_failed"]
        assert failed and "production" in failed[0]["error"]
        (notice,) = webhook.requests
        assert "production" in json.dumps(notice.body)

    def test_the_daemon_shows_the_refusal_in_metrics_and_healthz(self, postgres_factory, s3_server, tmp_path,
                                                                 docker_client):
        """In the daemon the refused copy counts as an offsite failure, and /healthz is unhealthy with the
        owner named from the start-up check on."""
        server = postgres_factory(databases=("authdb",))
        claim(s3_server, "production")
        settings = Settings(
            postgres_container=server.name, postgres_user=server.user, backup_dir=tmp_path / "b",
            s3_endpoint_url=s3_server.endpoint_url, s3_bucket=s3_server.bucket, s3_prefix=PREFIX,
            aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret_key,
            instance_name="staging",
        )
        metrics, health = Metrics(), HealthState(datetime.now(UTC), timedelta(hours=24))
        runner, _ = equipped_runner(settings, metrics, health, docker_client=docker_client)
        runner.progress_stream = io.StringIO()

        outcome = runner.run("database", "authdb")
        check_s3_claim(settings, health)

        assert outcome.ok, outcome.failures
        assert metrics.registry.get_sample_value(
            "pgbackup_s3_upload_failures_total", {"kind": "database", "target": "authdb"}) == 1
        healthy, body = health.verdict(datetime.now(UTC))
        assert not healthy
        (problem,) = body["problems"]
        assert problem["problem"] == S3_CLAIM_PROBLEM and "belongs to the install 'production'" in problem["detail"]

    def test_retention_never_deletes_another_installs_copies(self, s3_server, tmp_path):
        """The prefix holds a dead host's old copies (install 'old-host') beside this install's newer ones:
        the sweep expires only its own old copies and keeps every copy of the other install."""
        claim(s3_server, "production")
        theirs = [put_copy(s3_server, "old-host", days) for days in (60, 50, 40)]
        ours_old = put_copy(s3_server, "production", 45)
        ours_new = [put_copy(s3_server, "production", days) for days in (3, 2, 1)]
        backup_dir = tmp_path / "backups"
        backup_dir.mkdir()
        env = s3_env(_unused_server(), s3_server, backup_dir, INSTANCE_NAME="production", S3_RETENTION_DAYS="30")

        dry = pgbackup("prune", "--dry-run", env=env)
        result = pgbackup("prune", env=env)

        assert result.returncode == 0, result.stderr
        keys = bucket_keys(s3_server)
        assert all(f"{PREFIX}/{name}" in keys for name in theirs + ours_new)
        assert f"{PREFIX}/{ours_old}" not in keys
        assert "taken by the install 'old-host'" in dry.stdout

    def test_retention_of_an_install_that_does_not_own_the_prefix_deletes_nothing(self, s3_server, tmp_path):
        """Install B's sweep finds the prefix claimed by A: nothing in it is deleted, and prune says why."""
        claim(s3_server, "production")
        old = [put_copy(s3_server, "production", days) for days in (90, 80, 70)]
        before = bucket_keys(s3_server)
        backup_dir = tmp_path / "backups"
        backup_dir.mkdir()
        env = s3_env(_unused_server(), s3_server, backup_dir, INSTANCE_NAME="staging", S3_RETENTION_DAYS="1")

        result = pgbackup("prune", env=env)

        assert bucket_keys(s3_server) == before and len(old) == 3
        assert result.returncode == 1
        assert "belongs to the install 'production'" in result.stdout + result.stderr

    def test_restore_latest_never_picks_another_installs_backup(self, clusters, s3_server, tmp_path):
        """Staging (empty BACKUP_DIR, same prefix) asked for authdb's newest backup: it is refused with the
        other install named; with --instance it restores production's authdb on purpose."""
        production, staging = clusters
        made = pgbackup("backup", "database", "authdb",
                        env=s3_env(production, s3_server, tmp_path / "a", INSTANCE_NAME="production"))
        assert made.returncode == 0, made.stderr
        env_b = s3_env(staging, s3_server, tmp_path / "b", INSTANCE_NAME="staging")

        refused = pgbackup("restore", "database", "authdb", "--latest", "--into", "authdb_copy", "--yes", env=env_b)

        assert refused.returncode == 2
        assert "other installs match: production (1 backup)" in refused.stderr
        assert "--instance NAME" in refused.stderr
        assert "authdb_copy" not in staging.psql("SELECT datname FROM pg_database")

        chosen = pgbackup("restore", "database", "authdb", "--latest", "--into", "authdb_copy", "--yes",
                          "--instance", "production", env=env_b)

        assert chosen.returncode == 0, chosen.stderr
        assert staging.psql("SELECT what FROM marker", db="authdb_copy").strip() == "production-row"
        assert staging.psql("SELECT what FROM marker", db="authdb").strip() == "staging-row"


def _unused_server():
    """A stand-in for PostgreSQL: pruning never connects to it."""
    class Unused:
        name, user = "pgbackup-test-unused", "postgres"
    return Unused()
