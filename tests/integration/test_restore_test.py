"""The scheduled restore test against real containers: a throwaway PostgreSQL server is
started, filled from the newest backups, compared with their manifests and removed."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.verify.restore_test import run_restore_test
from daemon.verify.throwaway import LABEL
from tests.support import docker_env
from tests.support.pgbackup_cli import artifact_paths, exec_env, pgbackup
from tests.support.sample_data import seed


@pytest.fixture
def source(postgres_factory):
    server = postgres_factory()
    seed(server)
    return server


def settings_for(server, backup_dir, image) -> Settings:
    return Settings(postgres_container=server.name, backup_dir=backup_dir, restore_test_image=image,
                    backup_format="plain", _env_file=None)


def throwaway_containers(docker_client) -> list:
    """Restore-test containers started by this test session (the session label tells them apart)."""
    return docker_client.containers.list(
        all=True, filters={"label": [LABEL, f"{docker_env.SESSION_LABEL}={docker_env.SESSION_ID}"]})


def sample(metrics: Metrics, name: str, labels: dict | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


class TestRestoreTest:
    def test_success_sets_metrics_and_removes_the_container(self, source, tmp_path, postgres_image, docker_client):
        """The newest full and database backups restore and match; metrics say so; no container is left."""
        env = exec_env(source, tmp_path, BACKUP_FORMAT="plain")
        assert pgbackup("backup", "full", env=env).returncode == 0
        assert pgbackup("backup", "databases", env=env).returncode == 0
        metrics = Metrics()

        run = run_restore_test(settings_for(source, tmp_path, postgres_image), metrics, docker_client,
                               labels=docker_env.docker_labels())

        assert run.ok, run
        assert sorted(result.target for result in run.results) == ["admindb", "all", "apidb", "authdb", "postgres"]
        assert sample(metrics, "pgbackup_restore_test_runs_total", {"status": "success"}) == 1
        assert sample(metrics, "pgbackup_restore_test_runs_total", {"status": "failure"}) == 0
        assert sample(metrics, "pgbackup_restore_test_last_run_success") == 1
        assert sample(metrics, "pgbackup_restore_test_duration_seconds") > 0
        for target in ("all", "authdb", "apidb", "admindb"):
            assert sample(metrics, "pgbackup_restore_test_last_success_timestamp_seconds", {"target": target}) > 0
        assert throwaway_containers(docker_client) == []

    def test_a_tablespace_gets_its_directory_in_the_throwaway(self, source, tmp_path, postgres_image, docker_client):
        """A full backup with a tablespace restores in the throwaway container, which has no such
        directory until the restore test creates it."""
        source.container.exec_run(["sh", "-c", "mkdir -p '/srv/fast ts' && chown postgres '/srv/fast ts'"])
        source.psql("CREATE TABLESPACE fastspace LOCATION '/srv/fast ts'")
        source.psql("CREATE TABLE spaced (a int) TABLESPACE fastspace; INSERT INTO spaced VALUES (1)", db="authdb")
        env = exec_env(source, tmp_path, BACKUP_FORMAT="plain")
        assert pgbackup("backup", "full", env=env).returncode == 0

        run = run_restore_test(settings_for(source, tmp_path, postgres_image), Metrics(), docker_client,
                               labels=docker_env.docker_labels())
        assert run.ok, run
        assert throwaway_containers(docker_client) == []

    def test_failure_sets_metrics_and_removes_the_container(self, source, tmp_path, postgres_image, docker_client):
        """A dump that fails halfway through fails the test (logged, counted) and its container is still removed."""
        env = exec_env(source, tmp_path, BACKUP_FORMAT="plain")
        (artifact,) = artifact_paths(pgbackup("backup", "database", "apidb", env=env))
        sql = gzip.decompress(artifact.read_bytes())
        middle = sql.index(b"COPY api.requests")
        data = gzip.compress(sql[:middle] + b"SELECT 1/0;\n" + sql[middle:])
        artifact.write_bytes(data)
        manifest_file = artifact.with_name(artifact.name + ".manifest.json")
        manifest = json.loads(manifest_file.read_text())
        manifest.update(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), row_counts={})
        manifest_file.write_text(json.dumps(manifest))
        metrics = Metrics()
        notified = []

        run = run_restore_test(settings_for(source, tmp_path, postgres_image), metrics, docker_client,
                               labels=docker_env.docker_labels(), notify=notified.append)

        assert not run.ok
        (result,) = run.results
        assert result.target == "apidb" and "division by zero" in result.detail
        assert notified == [run]
        assert sample(metrics, "pgbackup_restore_test_runs_total", {"status": "failure"}) == 1
        assert sample(metrics, "pgbackup_restore_test_last_run_success") == 0
        assert sample(metrics, "pgbackup_restore_test_last_success_timestamp_seconds", {"target": "apidb"}) is None
        assert throwaway_containers(docker_client) == []

    def test_verify_latest_from_the_cli(self, source, tmp_path, postgres_image, docker_client):
        """`pgbackup verify` checks and restores the newest backups, prints OK for each and exits 0."""
        env = exec_env(source, tmp_path, RESTORE_TEST_IMAGE=postgres_image)
        assert pgbackup("backup", "full", env=env).returncode == 0
        assert pgbackup("backup", "database", "authdb", env=env).returncode == 0
        result = pgbackup("verify", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count(": OK") == 2
        assert "restored into a throwaway container" in result.stdout
        assert "pg_restore --list" in result.stdout or "sha256" in result.stdout

    def test_verify_a_table_backup(self, source, tmp_path, postgres_image):
        """`pgbackup verify FILE` of a backup of some tables checks the file (sha256, rows counted again) and
        says why it is not restored on its own (sessions refers to users, which it does not contain)."""
        env = exec_env(source, tmp_path, RESTORE_TEST_IMAGE=postgres_image, BACKUP_FORMAT="plain",
                       BACKUP_TABLES="authdb:sessions")
        backed_up = pgbackup("backup", "tables", env=env)
        assert backed_up.returncode == 0, backed_up.stderr
        (artifact,) = [line for line in backed_up.stdout.splitlines() if line.strip()]
        result = pgbackup("verify", artifact, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert ": OK" in result.stdout and "1 tables' row counts match the manifest" in result.stdout
        assert "not restored into a throwaway container (a backup of some tables needs" in result.stdout
