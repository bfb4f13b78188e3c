"""The core backups against real PostgreSQL containers: taken by the real CLI, restored with
the team's manual procedures, and compared table by table with the source."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import tarfile
import time

import pytest

from tests.support.pgbackup_cli import (
    REPO_ROOT,
    artifact_paths,
    exec_env,
    log_events,
    pgbackup,
    start_pgbackup,
    tcp_env,
)
from tests.support.sample_data import seeded_server, server_fingerprints

DATABASES = ["authdb", "apidb", "admindb"]


def restore_plain(target, artifact) -> subprocess.CompletedProcess:
    """The runbook's manual restore: gunzip -c FILE | psql -U postgres."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"gunzip -c '{artifact}' | docker exec -i {target.name} psql -X -q -U postgres"],
        capture_output=True, text=True, timeout=600,
    )


def pg_restore(target, artifact, database: str, *extra: str) -> subprocess.CompletedProcess:
    with open(artifact, "rb") as dump:
        return subprocess.run(
            ["docker", "exec", "-i", target.name, "pg_restore", "-U", "postgres", "--exit-on-error",
             "-d", database, *extra],
            stdin=dump, capture_output=True, text=True, timeout=600,
        )


@pytest.fixture(scope="module")
def source(docker_client, postgres_image):
    """One seeded server for the module's tests, which only read from it."""
    with seeded_server(docker_client, postgres_image) as server:
        yield server


class TestFullBackupRoundTrip:
    @pytest.mark.parametrize("dump_connection", ["exec", "auto"])
    def test_full_backup_restores_with_gunzip_and_psql(self, source, postgres_factory, tmp_path, dump_connection):
        """`pgbackup backup full` writes a .sql.gz that the manual procedure restores into an empty server, equal table by table."""
        env = exec_env(source, tmp_path, POSTGRES_PASSWORD=source.password, DUMP_CONNECTION=dump_connection)
        result = pgbackup("backup", "full", env=env)
        assert result.returncode == 0, result.stderr
        (artifact,) = artifact_paths(result)
        assert artifact.name.startswith("backup_all_") and artifact.name.endswith(".sql.gz")

        target = postgres_factory(databases=())
        restored = restore_plain(target, artifact)
        assert restored.returncode == 0, restored.stderr
        assert server_fingerprints(target, DATABASES) == server_fingerprints(source, DATABASES)
        assert target.psql("SELECT rolname FROM pg_roles WHERE rolname = 'app_user'") == "app_user"

    def test_manifest_describes_the_artifact(self, source, tmp_path):
        """The manifest next to the artifact has its real size and sha256, times, version and kind; files are 0600."""
        result = pgbackup("backup", "full", env=exec_env(source, tmp_path))
        (artifact,) = artifact_paths(result)
        manifest = json.loads((artifact.parent / (artifact.name + ".manifest.json")).read_text())
        assert manifest["kind"] == "full" and manifest["target"] == "all" and manifest["file"] == artifact.name
        assert manifest["size_bytes"] == artifact.stat().st_size
        assert manifest["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
        assert manifest["server_version"].startswith("15.")
        assert manifest["format"] == "plain" and manifest["compression"] == "gzip"
        assert manifest["keep_forever"] is False
        assert manifest["started_at"] <= manifest["finished_at"]
        assert set(DATABASES) <= set(manifest["databases"])
        assert oct(artifact.stat().st_mode & 0o777) == "0o600"
        assert gzip.decompress(artifact.read_bytes()).rstrip().endswith(b"--")  # a complete gzip stream

    def test_pre_migration_backup_is_kept_forever(self, source, tmp_path):
        """`pgbackup backup pre-migration` writes backup_before_migration_*.sql.gz marked keep_forever."""
        result = pgbackup("backup", "pre-migration", env=exec_env(source, tmp_path))
        assert result.returncode == 0, result.stderr
        (artifact,) = artifact_paths(result)
        assert artifact.name.startswith("backup_before_migration_")
        manifest = json.loads((tmp_path / (artifact.name + ".manifest.json")).read_text())
        assert manifest["kind"] == "pre_migration" and manifest["keep_forever"] is True


class TestDatabaseBackups:
    @pytest.mark.parametrize("method", ["docker_exec", "container_tcp", "tcp"])
    def test_custom_dumps_restore_with_pg_restore(self, source, postgres_factory, tmp_path, method):
        """Each database's custom-format dump restores with pg_restore -j into a fresh server, equal table by table,
        whether it came through docker exec, TCP to the container's address, or TCP to a given host."""
        settings = {"BACKUP_DATABASES": ",".join(DATABASES)}
        if method == "tcp":
            env = tcp_env(source, tmp_path, **settings)
        elif method == "container_tcp":
            env = exec_env(source, tmp_path, POSTGRES_PASSWORD=source.password, **settings)
        else:
            env = exec_env(source, tmp_path, **settings)
        result = pgbackup("backup", "databases", env=env)
        assert result.returncode == 0, result.stderr
        artifacts = {path.name.rsplit("_", 2)[0]: path for path in artifact_paths(result)}
        assert set(artifacts) == set(DATABASES) and all(p.suffix == ".dump" for p in artifacts.values())

        target = postgres_factory(databases=DATABASES)
        target.psql("CREATE ROLE app_user LOGIN")
        for database, artifact in artifacts.items():
            target.container.put_archive("/tmp", _tar_of(artifact, "restore.dump"))
            restored = target.container.exec_run(
                ["pg_restore", "-U", "postgres", "--exit-on-error", "-j", "2", "-d", database, "/tmp/restore.dump"]
            )
            assert restored.exit_code == 0, restored.output.decode()
        assert server_fingerprints(target, DATABASES) == server_fingerprints(source, DATABASES)
        manifest = json.loads((tmp_path / (artifacts["authdb"].name + ".manifest.json")).read_text())
        assert manifest["method"] == method and manifest["format"] == "custom"

    @pytest.mark.parametrize("jobs", [2, 1])
    def test_databases_are_dumped_side_by_side(self, source, tmp_path, jobs):
        """DATABASE_JOBS=2 dumps two databases at once (their manifests' start-to-finish intervals
        overlap); 1 dumps one after another. Either way the run log holds every dump's lines."""
        env = exec_env(source, tmp_path, BACKUP_DATABASES=",".join(DATABASES), DATABASE_JOBS=str(jobs))
        result = pgbackup("backup", "databases", env=env)
        assert result.returncode == 0, result.stderr
        manifests = sorted((json.loads(path.read_text()) for path in tmp_path.glob("*.manifest.json")),
                           key=lambda manifest: manifest["started_at"])
        assert [m["target"] for m in manifests] and {m["target"] for m in manifests} == set(DATABASES)
        first, second = manifests[0], manifests[1]
        overlapping = second["started_at"] < first["finished_at"]
        assert overlapping is (jobs == 2), [(m["target"], m["started_at"], m["finished_at"]) for m in manifests]
        (run_log,) = tmp_path.glob("backup_*.log")
        written = [json.loads(line) for line in run_log.read_text().splitlines()]
        assert sorted(e["target"] for e in written if e.get("event") == "artifact_written") == sorted(DATABASES)

    def test_plain_and_directory_formats_round_trip(self, source, postgres_factory, tmp_path):
        """BACKUP_FORMAT=plain gives .sql.gz and directory gives a tar of -Fd; both restore equal."""
        plain = pgbackup("backup", "database", "apidb", env=exec_env(source, tmp_path, BACKUP_FORMAT="plain"))
        directory = pgbackup("backup", "database", "admindb",
                             env=exec_env(source, tmp_path, BACKUP_FORMAT="directory"))
        assert plain.returncode == 0 and directory.returncode == 0, plain.stderr + directory.stderr
        (plain_file,) = artifact_paths(plain)
        (directory_file,) = artifact_paths(directory)
        assert plain_file.name.endswith(".sql.gz") and directory_file.name.endswith(".dir.tar")

        target = postgres_factory(databases=["apidb", "admindb"])
        restored = subprocess.run(
            ["bash", "-o", "pipefail", "-c",
             f"gunzip -c '{plain_file}' | docker exec -i {target.name} psql -X -q -v ON_ERROR_STOP=1 -U postgres -d apidb"],
            capture_output=True, text=True, timeout=300,
        )
        assert restored.returncode == 0, restored.stderr
        target.container.put_archive("/tmp", directory_file.read_bytes())
        result = target.container.exec_run(
            ["pg_restore", "-U", "postgres", "--exit-on-error", "-j", "2", "-d", "admindb", "/tmp/dump"])
        assert result.exit_code == 0, result.output.decode()
        assert server_fingerprints(target, ["apidb", "admindb"]) == server_fingerprints(source, ["apidb", "admindb"])

    def test_every_database_by_default_and_any_name(self, postgres_factory, tmp_path):
        """With BACKUP_DATABASES empty every non-template database is dumped, whatever its name."""
        odd = 'we"ird db/ünï'
        server = postgres_factory(databases=["authdb", odd])
        server.psql("CREATE TABLE t AS SELECT generate_series(1, 10) AS n", db=odd)
        result = pgbackup("backup", "databases", env=exec_env(server, tmp_path))
        assert result.returncode == 0, result.stderr
        manifests = [json.loads(p.read_text()) for p in tmp_path.glob("*.manifest.json")]
        assert {m["target"] for m in manifests} == {"authdb", odd, "postgres"}
        for path in artifact_paths(result):
            assert path.parent == tmp_path and "/" not in path.name and '"' not in path.name


    def test_a_database_left_invalid_is_skipped_and_named(self, postgres_factory, tmp_path):
        """A database that an interrupted DROP DATABASE left invalid (datconnlimit -2) is not dumped, as
        pg_dumpall does not: `backup databases` succeeds for the others and logs its name, and the full
        backup's manifest does not list it."""
        server = postgres_factory(databases=["authdb", "half_dropped"])
        server.psql("UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'half_dropped'")
        env = exec_env(server, tmp_path)
        result = pgbackup("backup", "databases", env=env)
        assert result.returncode == 0, result.stderr
        assert {json.loads(p.read_text())["target"] for p in tmp_path.glob("*.manifest.json")} == {"authdb", "postgres"}
        skipped = [e for e in log_events(result.stderr) if e["event"] == "invalid_database_skipped"]
        assert [e["database"] for e in skipped] == ["half_dropped"]
        full = pgbackup("backup", "full", env=env)
        assert full.returncode == 0, full.stderr
        (artifact,) = artifact_paths(full)
        manifest = json.loads(artifact.with_name(artifact.name + ".manifest.json").read_text())
        assert manifest["databases"] == ["authdb", "postgres"]
        assert b"CREATE DATABASE half_dropped" not in gzip.decompress(artifact.read_bytes())

class TestTableBackups:
    def test_selected_tables_only(self, source, postgres_factory, tmp_path):
        """BACKUP_TABLES dumps exactly the listed tables, one artifact per database, and they restore."""
        env = exec_env(source, tmp_path, BACKUP_TABLES="authdb:users;admindb:documents,knowledge_bases")
        result = pgbackup("backup", "tables", env=env)
        assert result.returncode == 0, result.stderr
        names = sorted(p.name.split("_tables_")[0] for p in artifact_paths(result))
        assert names == ["admindb", "authdb"]
        admin = next(p for p in artifact_paths(result) if p.name.startswith("admindb"))
        target = postgres_factory(databases=["admindb"])
        target.container.put_archive("/tmp", _tar_of(admin, "t.dump"))
        restored = target.container.exec_run(["pg_restore", "-U", "postgres", "--exit-on-error", "-d", "admindb",
                                              "/tmp/t.dump"])
        assert restored.exit_code == 0, restored.output.decode()
        assert server_fingerprints(target, ["admindb"]) == server_fingerprints(source, ["admindb"])

    def test_missing_table_is_a_failure(self, source, tmp_path):
        """A table that does not exist fails the run (pg_dump --strict-names) and leaves no artifact."""
        env = exec_env(source, tmp_path, BACKUP_TABLES="authdb:no_such_table")
        result = pgbackup("backup", "tables", env=env)
        assert result.returncode == 1
        assert "no_such_table" in result.stderr
        assert backup_files(tmp_path) == {}


class TestFailures:
    def test_killed_pg_dump_leaves_no_artifact(self, postgres_factory, tmp_path):
        """Killing pg_dump half-way gives a non-zero exit, the tool's stderr, no artifact and no manifest."""
        server = postgres_factory(databases=["apidb"])
        server.psql("CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 8) AS payload "
                    "FROM generate_series(1, 1500000) AS g", db="apidb")
        process = start_pgbackup("backup", "full", env=exec_env(server, tmp_path))
        killed = _kill_when_running(server, "pg_dump", "apidb")
        stdout, stderr = process.communicate(timeout=300)
        assert killed, "pg_dump of apidb was not found running in the container"
        assert process.returncode == 1
        assert "pg_dumpall failed" in stderr and "apidb" in stderr
        assert backup_files(tmp_path) == {}
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        failed = [e for e in log_events(stderr) if e["event"] == "backup_failed"]
        assert failed and failed[0]["kind"] == "full" and failed[0]["target"] == "all"

    def test_missing_container(self, tmp_path):
        """A container that does not exist is named in a clear error."""
        env = exec_env(type("S", (), {"name": "pgbackup-test-no-such-container", "user": "postgres"}), tmp_path)
        result = pgbackup("backup", "full", env=env)
        assert result.returncode == 1
        assert "'pgbackup-test-no-such-container' does not exist" in result.stderr

    def test_stopped_container(self, postgres_factory, tmp_path):
        """A stopped database container gives 'is not running'."""
        server = postgres_factory(databases=())
        server.stop()
        result = pgbackup("backup", "full", env=exec_env(server, tmp_path))
        assert result.returncode == 1 and "is not running" in result.stderr

    def test_a_wrong_password_fails_instead_of_falling_back(self, source, tmp_path):
        """With POSTGRES_CONTAINER and a POSTGRES_PASSWORD the server refuses, DUMP_CONNECTION=auto does not quietly
        fall back to docker exec: the run fails, names the variable, and leaves no artifact."""
        env = exec_env(source, tmp_path, POSTGRES_PASSWORD="not-the-password")
        result = pgbackup("backup", "database", "authdb", env=env)
        assert result.returncode == 1
        assert "refused the password of 'postgres': POSTGRES_PASSWORD is wrong" in result.stderr
        assert "not-the-password" not in result.stderr
        assert not list(tmp_path.glob("authdb_*"))
        exec_only = pgbackup("backup", "database", "authdb", env={**env, "DUMP_CONNECTION": "exec"})
        assert exec_only.returncode == 0, exec_only.stderr

    def test_server_down_over_tcp(self, postgres_factory, tmp_path):
        """With TCP, a server that does not answer gives a 'cannot query PostgreSQL' error."""
        server = postgres_factory(databases=())
        env = tcp_env(server, tmp_path)
        server.stop()
        result = pgbackup("backup", "database", "authdb", env=env)
        assert result.returncode == 1 and "cannot query PostgreSQL" in result.stderr

    def test_earlier_backups_survive_a_failure(self, postgres_factory, tmp_path):
        """A failed run touches none of the earlier artifacts."""
        source = postgres_factory(databases=["authdb"])
        first = pgbackup("backup", "full", env=exec_env(source, tmp_path))
        before = backup_files(tmp_path)
        source.stop()
        assert pgbackup("backup", "full", env=exec_env(source, tmp_path)).returncode == 1
        after = backup_files(tmp_path)
        assert first.returncode == 0 and after == before


class TestLock:
    def test_runs_never_overlap(self, postgres_factory, tmp_path):
        """A second run waits for the first (and says so); with --no-wait it exits 3 at once."""
        server = postgres_factory(databases=["apidb"])
        server.psql("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS payload "
                    "FROM generate_series(1, 10000) AS g", db="apidb")
        # The first run's pg_dump waits for this lock for 8 s, however fast dumps are, so it
        # still holds the backup lock when the other two runs start.
        _hold_table_lock(server, "apidb", "big", seconds=8)
        env = exec_env(server, tmp_path)
        first = start_pgbackup("backup", "full", env=env)
        _wait_for_lock_holder(tmp_path)
        refused = pgbackup("backup", "database", "apidb", "--no-wait", env=env)
        assert refused.returncode == 3 and "another backup run" in refused.stderr
        second = pgbackup("backup", "database", "apidb", env=env)
        first_out, first_err = first.communicate(timeout=300)
        assert first.returncode == 0 and second.returncode == 0, first_err + second.stderr
        waited = [e for e in log_events(second.stderr) if e["event"] == "waiting_for_lock"]
        assert waited and waited[0]["held_by"]["kind"] == "full"
        first_done = _event_time(log_events(first_err), "run_finished")
        second_start = _event_time(log_events(second.stderr), "run_started")
        assert second_start >= first_done


def backup_files(directory) -> dict[str, bytes]:
    """Artifacts and manifests in a backup directory (not the lock, partials or run logs)."""
    return {
        path.name: path.read_bytes()
        for path in directory.iterdir()
        if not path.name.startswith(".") and not path.name.endswith(".log")
    }


def _tar_of(path, name: str) -> bytes:
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(path, arcname=name)
    return buffer.getvalue()


def _kill_when_running(server, program: str, argument: str, timeout: float = 60) -> bool:
    """Kill ``program`` (the one whose command line names ``argument``) inside the container, from the host."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        top = server.container.top(ps_args="-eo pid,comm,args")
        pids = [int(row[0]) for row in top.get("Processes") or [] if row[1] == program and argument in row[2]]
        if pids:
            time.sleep(0.3)
            try:
                os.kill(pids[0], signal.SIGKILL)
                return True
            except ProcessLookupError:
                return False
        time.sleep(0.05)
    return False


def _hold_table_lock(server, database: str, table: str, seconds: float) -> None:
    """Hold ACCESS EXCLUSIVE on ``table`` for ``seconds`` from a background session; return once held."""
    server.container.exec_run(
        ["psql", "-X", "-U", server.user, "-d", database, "-c",
         f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({seconds}); COMMIT;"],
        user="postgres", detach=True,
    )
    deadline = time.monotonic() + 30
    held = "SELECT count(*) FROM pg_locks WHERE relation = '{}'::regclass AND mode = 'AccessExclusiveLock' AND granted"
    while server.psql(held.format(table), db=database) != "1":
        assert time.monotonic() < deadline, f"the lock on {table} was never taken"
        time.sleep(0.05)


def _wait_for_lock_holder(directory, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    lock = directory / ".pgbackup.lock"
    while time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip():
            return
        time.sleep(0.05)
    raise AssertionError("the first run never took the lock")


def _event_time(events: list[dict], name: str) -> str:
    return next(e["timestamp"] for e in events if e["event"] == name)


class TestMemory:
    def test_peak_memory_does_not_grow_with_the_dump(self, postgres_factory, tmp_path):
        """The backup process's peak RSS is the same for a 2 MB and a 250 MB dump (it streams) and stays under 150 MB."""
        server = postgres_factory(databases=["apidb"])
        server.psql("CREATE TABLE small AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) AS g",
                    db="apidb")
        env = exec_env(server, tmp_path, POSTGRES_PASSWORD=server.password)
        small = _peak_rss_of_backup(env, tmp_path / "small")
        server.psql("CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 7) AS v "
                    "FROM generate_series(1, 1000000) AS g", db="apidb")
        large = _peak_rss_of_backup(env, tmp_path / "large")
        assert large["raw_bytes"] > 100 * small["raw_bytes"]
        assert large["peak_rss"] < 150 * 2**20
        assert large["peak_rss"] - small["peak_rss"] < 16 * 2**20, (small, large)


def _peak_rss_of_backup(env: dict, directory) -> dict:
    """Run `pgbackup backup full` and read its peak RSS from the kernel's accounting (wait4)."""
    import sys

    directory.mkdir()
    env = {**env, "BACKUP_DIR": str(directory)}
    process = subprocess.Popen([sys.executable, "-m", "daemon", "backup", "full"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    (artifact,) = directory.glob("backup_all_*.sql.gz")
    raw = len(gzip.decompress(artifact.read_bytes()))
    return {"peak_rss": usage.ru_maxrss * 1024, "raw_bytes": raw}


class TestDroppedDatabase:
    def test_a_dropped_database_stops_being_published_after_the_next_run(self, postgres_factory, tmp_path):
        """The daemon's databases run covers what the server has now: a dropped database's newest dump stays
        on disk (retention keeps it), but its freshness is no longer published, so PgBackupStale cannot
        fire for it for ever; the remaining database's is."""
        from datetime import datetime, timedelta

        from daemon.backup.runner import BackupRunner
        from daemon.manifest import scan_manifests
        from daemon.monitoring.health import HealthState
        from daemon.monitoring.metrics import Metrics
        from daemon.settings import Settings

        server = postgres_factory(databases=("authdb", "legacydb"))
        settings = Settings(postgres_container=server.name, postgres_password=server.password,
                            backup_dir=tmp_path, _env_file=None)
        metrics = Metrics()
        runner = BackupRunner(settings, metrics, HealthState(datetime.now(settings.timezone), timedelta(hours=24)))

        def freshness(target: str) -> float | None:
            return metrics.registry.get_sample_value(
                "pgbackup_last_success_timestamp_seconds", {"kind": "database", "target": target})

        assert runner.run("databases").ok
        assert freshness("authdb") and freshness("legacydb")
        server.psql("DROP DATABASE legacydb")
        assert runner.run("databases").ok
        metrics.load_manifests(scan_manifests(tmp_path).manifests, runner.clock())  # as the rescan does
        assert freshness("authdb") and freshness("legacydb") is None
        assert any(path.name.startswith("legacydb_") for path in tmp_path.iterdir())
