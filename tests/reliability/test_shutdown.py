"""Item 2: a stop reaches every phase, and a stopped command leaves nothing behind.

The dump is made reliably "mid-run" by a real lock: another session holds ACCESS EXCLUSIVE on
a table in an open transaction, so pg_dump has started (pg_dumpall has already printed the
roles, the hidden ``.partial`` exists) but waits, printing nothing, until the lock is released.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import pytest

from daemon.errors import Cancelled
from daemon.housekeeping.offsite import Offsite
from daemon.manifest import Manifest, scan_manifests, write_manifest
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.naming import full_backup_name, is_partial
from daemon.service import equipped_runner
from daemon.settings import Settings
from daemon.storage.s3_claim import CLAIM_NAME
from daemon.storage.s3_upload import MIN_PART_SIZE
from daemon.verify import throwaway
from daemon.verify.restore_test import run_restore_test
from tests.support.docker_env import SESSION_ID, SESSION_LABEL, docker_labels, free_port
from tests.support.pgbackup_cli import artifact_paths, exec_env, log_events, pgbackup, start_pgbackup, tcp_env
from tests.support.postgres import PgServer
from tests.support.sample_data import seeded_server

UTC = ZoneInfo("UTC")
FAR_AWAY = "0 3 1 1 *"  # once a year: never during a test
LOCKER = "pgbackup-test-locker"
OUR_SESSIONS = "application_name = 'pgbackup'"  # the sidecar's connections name themselves so
# Every process in the container whose command line starts with a client tool of ours.
_CLIENT_PROCESSES = (
    "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done "
    "| grep -E '^(pg_dump|pg_dumpall|psql|pg_restore) ' || true"
)


@pytest.fixture(scope="module")
def source(docker_client, postgres_image) -> Iterator[PgServer]:
    """One seeded server for the module (each test releases the locks it takes)."""
    with seeded_server(docker_client, postgres_image) as server:
        yield server


def hold_exclusive_lock(server: PgServer, database: str, table: str) -> None:
    """Another session takes ACCESS EXCLUSIVE on ``table`` and keeps its transaction open."""
    sql = f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3600);"
    server.container.exec_run(["psql", "-X", "-U", server.user, "-d", database, "-c", sql], user="postgres",
                              environment={"PGAPPNAME": LOCKER}, detach=True)
    wait_for(lambda: server.psql(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        f"WHERE a.application_name = '{LOCKER}' AND l.mode = 'AccessExclusiveLock' AND l.granted") == "1",
        "the locking session holds its lock")


def release_locks(server: PgServer) -> None:
    server.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{LOCKER}'")


def dump_sessions_waiting(server: PgServer) -> int:
    return int(server.psql("SELECT count(*) FROM pg_stat_activity "
                           f"WHERE {OUR_SESSIONS} AND wait_event_type = 'Lock'"))


def dump_sessions(server: PgServer) -> int:
    return int(server.psql(f"SELECT count(*) FROM pg_stat_activity WHERE {OUR_SESSIONS}"))


def client_processes(server: PgServer) -> list[str]:
    _, output = server.container.exec_run(["sh", "-c", _CLIENT_PROCESSES])
    return [line for line in output.decode().splitlines() if line.strip()]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.2)


def partials(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if is_partial(path.name))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_nothing_left(server: PgServer, backup_dir: Path, earlier: Path, earlier_sha: str) -> None:
    """No partial file, only the earlier backup listed and intact, no client tool still running, and
    the server never crashed (an orphaned tool that dies of a signal is reaped by the postmaster,
    PID 1 of the container, which takes it for a crashed backend and restarts every session)."""
    assert partials(backup_dir) == []
    assert [m.file for m in scan_manifests(backup_dir).manifests] == [earlier.name]
    assert sha256(earlier) == earlier_sha
    wait_for(lambda: client_processes(server) == [], "no pg_dump is left in the database container", 10)
    release_locks(server)
    wait_for(lambda: dump_sessions(server) == 0, "the dump's server session has ended", 15)
    assert "terminated by signal" not in server.container.logs().decode(errors="replace")


class TestOneShotBackupStopped:
    @pytest.mark.parametrize(("method", "signum"), [
        ("exec", signal.SIGTERM), ("exec", signal.SIGINT), ("tcp", signal.SIGTERM),
    ])
    def test_signal_mid_dump_cleans_up(self, source, tmp_path, method, signum):
        """SIGTERM or SIGINT to `pgbackup backup full` while pg_dump waits on a lock: the command exits
        128+signal at once saying so, the .partial is gone, nothing new is listed, the earlier backup is
        intact and no pg_dump is left running, in the database container (docker exec) or on this host
        (TCP)."""
        backup_dir = tmp_path / "backups"
        env = (exec_env if method == "exec" else tcp_env)(source, backup_dir)
        first = pgbackup("backup", "database", "authdb", env=env)
        assert first.returncode == 0, first.stderr
        (earlier,) = artifact_paths(first)
        earlier_sha = sha256(earlier)

        hold_exclusive_lock(source, "admindb", "documents")
        command = start_pgbackup("backup", "full", env=env)
        try:
            wait_for(lambda: dump_sessions_waiting(source) == 1 and partials(backup_dir) != [],
                     "pg_dump waits on the lock with the .partial written")
            started = time.monotonic()
            command.send_signal(signum)
            _, stderr = command.communicate(timeout=30)
        finally:
            if command.poll() is None:
                command.kill()
            release_locks(source)
        assert time.monotonic() - started < 15
        assert command.returncode == 128 + signum, stderr
        assert f"stopped by {signal.Signals(signum).name}" in stderr
        assert local_dump_processes(source) == []
        assert_nothing_left(source, backup_dir, earlier, earlier_sha)


class TestOneShotRestoreStopped:
    def test_sigterm_mid_restore_cleans_up(self, source, tmp_path):
        """SIGTERM to `pgbackup restore database` while pg_restore -j fills the staging database: exit 143
        with the message, the staging database dropped, no target created, no pg_restore or psql left in the
        container, its archive copy in /tmp removed, and the server never crashed."""
        fill_big_database(source)
        env = exec_env(source, tmp_path / "backups", RESTORE_JOBS="2")
        try:
            assert pgbackup("backup", "database", "bigdb", env=env).returncode == 0
            command = start_pgbackup("restore", "database", "bigdb", "--latest", "--into", "bigdb_copy", "--yes",
                                     env=env)
            try:
                wait_for(lambda: restore_copying(source), "pg_restore copies rows into the staging database", 60)
                command.send_signal(signal.SIGTERM)
                _, stderr = command.communicate(timeout=60)
            finally:
                if command.poll() is None:
                    command.kill()
            assert command.returncode == 143, stderr
            assert "stopped by SIGTERM" in stderr
            wait_for(lambda: client_processes(source) == [], "no pg_restore is left in the container", 15)
            left = {name for name in databases_named(source) if name.startswith(("pgbackup_restore_", "bigdb_"))}
            assert left == set()
            _, scratch = source.container.exec_run(["sh", "-c", "ls -d /tmp/pgbackup-restore.* 2>/dev/null; true"])
            assert scratch.decode().split() == []
            assert "terminated by signal" not in source.container.logs().decode(errors="replace")
        finally:
            source.psql("DROP DATABASE IF EXISTS bigdb_copy; DROP DATABASE bigdb WITH (FORCE);")


def fill_big_database(server: PgServer) -> None:
    """Database bigdb with about 100 MB of rows."""
    server.psql("CREATE DATABASE bigdb")
    server.psql("CREATE TABLE filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload "
                "FROM generate_series(1, 1500000) AS g", db="bigdb")


def restore_copying(server: PgServer) -> bool:
    return server.psql("SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'pgbackup_restore_%' "
                       "AND query LIKE 'COPY%'") != "0"


def databases_named(server: PgServer) -> list[str]:
    return server.psql("SELECT datname FROM pg_database").splitlines()


def local_dump_processes(server: PgServer) -> list[str]:
    """Client tools on this host connected to ``server``'s port (the TCP method's children)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        command = " ".join(process.info["cmdline"] or ())
        if process.info["name"] in ("pg_dump", "pg_dumpall") and str(server.port) in command:
            found.append(command)
    return found


def daemon_runner(settings: Settings, docker_client):
    runner, _ = equipped_runner(settings, Metrics(), HealthState(datetime.now(UTC), timedelta(hours=24)),
                                docker_client=docker_client)
    runner.progress_stream = io.StringIO()
    return runner


class TestDaemonStopsASilentDump:
    def test_cancel_ends_a_dump_waiting_on_a_lock(self, source, docker_client, tmp_path):
        """The daemon's stop (the cancel event, set from the signal handler) ends a pg_dump that prints
        nothing because it waits on an ACCESS EXCLUSIVE lock: the run raises Cancelled within seconds,
        not at Docker's SIGKILL, and leaves no partial file, no artifact and no pg_dump behind."""
        backup_dir = tmp_path / "backups"
        settings = Settings(postgres_container=source.name, backup_dir=backup_dir)
        runner = daemon_runner(settings, docker_client)
        earlier = runner.run("database", "apidb")
        assert earlier.ok, earlier.failures
        earlier_path = backup_dir / earlier.artifacts[0].file
        earlier_sha = sha256(earlier_path)

        hold_exclusive_lock(source, "authdb", "sessions")
        result: dict[str, object] = {}

        def run() -> None:
            try:
                result["outcome"] = runner.run("database", "authdb")
            except BaseException as error:  # handed to the test thread
                result["error"] = error

        job = threading.Thread(target=run)
        try:
            job.start()
            wait_for(lambda: dump_sessions_waiting(source) == 1, "pg_dump waits on the lock")
            time.sleep(1)  # the dump has printed nothing for a while: its reader is blocked in a read
            started = time.monotonic()
            runner.cancel.set()
            job.join(timeout=20)
            stopped_after = time.monotonic() - started
        finally:
            release_locks(source)
            job.join(timeout=60)
        assert stopped_after < 10, "the run did not see the stop"
        assert isinstance(result.get("error"), Cancelled), result
        assert_nothing_left(source, backup_dir, earlier_path, earlier_sha)


class TestDaemonShutdown:
    def test_sigterm_during_a_silent_dump_stops_the_daemon_promptly(self, source, tmp_path):
        """SIGTERM to `pgbackup run` while its scheduled pg_dump waits on a lock: the daemon logs the
        cancelled run and stops within seconds (compose's grace is 10 s by default), with exit status 0
        and no partial file or pg_dump left."""
        backup_dir = tmp_path / "backups"
        env = exec_env(source, backup_dir, METRICS_PORT=str(free_port()), BACKUP_DATABASES="authdb",
                       SCHEDULE_DATABASES="* * * * *", SCHEDULE_FULL=FAR_AWAY, SCHEDULE_RETENTION=FAR_AWAY,
                       SCHEDULE_RESTORE_TEST=FAR_AWAY)
        first = pgbackup("backup", "database", "authdb", env=env)
        assert first.returncode == 0, first.stderr
        (earlier,) = artifact_paths(first)
        earlier_sha = sha256(earlier)

        hold_exclusive_lock(source, "authdb", "users")
        daemon = start_pgbackup("run", env=env)
        try:
            wait_for(lambda: dump_sessions_waiting(source) == 1, "the scheduled dump waits on the lock", 75)
            started = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            stdout, stderr = daemon.communicate(timeout=30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
            release_locks(source)
        assert time.monotonic() - started < 8, "the daemon waited for the dump"
        assert daemon.returncode == 0, stderr
        events = [event["event"] for event in log_events(stdout)]
        assert "run_cancelled" in events and events[-1] == "daemon_stopped"
        assert_nothing_left(source, backup_dir, earlier, earlier_sha)


class TestRestoreTestStopped:
    def test_cancel_removes_the_throwaway_at_once(self, source, docker_client, postgres_image, tmp_path):
        """A stop during the restore test removes its throwaway container (a copy of production data) at
        once; the cut-short run is logged, neither counted as a failure nor notified."""
        backup_dir = tmp_path / "backups"
        env = exec_env(source, backup_dir, BACKUP_FORMAT="plain")
        fill_big_database(source)  # a restore of several seconds: the stop reliably finds it running
        try:
            assert pgbackup("backup", "full", env=env).returncode == 0
        finally:
            source.psql("DROP DATABASE bigdb WITH (FORCE)")
        settings = Settings(postgres_container=source.name, backup_dir=backup_dir, restore_test_image=postgres_image)
        metrics, cancel, notified, result = Metrics(), threading.Event(), [], {}
        job = threading.Thread(target=lambda: result.update(run=run_restore_test(
            settings, metrics, docker_client, labels=docker_labels(), notify=notified.append, cancel=cancel)))
        job.start()
        try:
            wait_for(lambda: own_throwaways(docker_client) != [], "the throwaway container runs", 60)
            started = time.monotonic()
            cancel.set()
            job.join(timeout=30)
            stopped_after = time.monotonic() - started
        finally:
            cancel.set()
            job.join(timeout=120)
        assert stopped_after < 10
        assert own_throwaways(docker_client) == []
        assert "cancelled" in result["run"].error
        assert metrics.registry.get_sample_value("pgbackup_restore_test_runs_total", {"status": "failure"}) is None
        assert notified == []


def own_throwaways(client) -> list:
    return client.containers.list(all=True, filters={"label": [throwaway.LABEL, f"{SESSION_LABEL}={SESSION_ID}"]})


class StopAfterFirstUpload(Offsite):
    """The backlog with a stop arriving while its first upload finishes."""

    def succeeded(self, manifest: Manifest, record: dict) -> None:
        super().succeeded(manifest, record)
        self.cancel.set()


class TestBacklogStopped:
    def test_a_stop_ends_the_backlog_between_two_uploads(self, source, s3_server, tmp_path):
        """With two backups waiting for their offsite copy, a stop during the first upload ends the backlog
        after it: one copy complete, the other left for the next run (its manifest says nothing yet)."""
        backup_dir = tmp_path / "backups"
        env = exec_env(source, backup_dir)
        for database in ("authdb", "apidb"):
            assert pgbackup("backup", "database", database, env=env).returncode == 0
        settings = Settings(postgres_container=source.name, backup_dir=backup_dir,
                            s3_endpoint_url=s3_server.endpoint_url, s3_bucket=s3_server.bucket,
                            aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret_key)
        offsite = StopAfterFirstUpload(settings, Metrics(), lambda: datetime.now(UTC), cancel=threading.Event())
        assert offsite.upload_backlog() == 1
        statuses = sorted(m.offsite.get("status", "none") for m in scan_manifests(backup_dir).manifests)
        assert statuses == ["complete", "none"]

    def test_a_stop_aborts_the_upload_in_progress_at_the_next_part(self, s3_server, tmp_path):
        """A stop while a large backlog upload runs: aborted at the next part, nothing incomplete is left
        in the bucket, no upload failure is counted, and the manifest still waits for its copy."""
        backup_dir = tmp_path / "backups"
        backup_dir.mkdir()
        data = os.urandom(8 * MIN_PART_SIZE)
        started = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
        artifact = Manifest(kind="full", target="all", file=full_backup_name(started), size_bytes=len(data),
                            sha256=hashlib.sha256(data).hexdigest(), started_at=started,
                            finished_at=started + timedelta(seconds=5), server_version="15.8", format="plain",
                            compression="gzip")
        (backup_dir / artifact.file).write_bytes(data)
        write_manifest(backup_dir, artifact)
        settings = Settings(postgres_container="unused", backup_dir=backup_dir,
                            s3_endpoint_url=s3_server.endpoint_url, s3_bucket=s3_server.bucket,
                            aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret_key)
        cancel, metrics = threading.Event(), Metrics()
        offsite = Offsite(settings, metrics, lambda: datetime.now(UTC), part_size=MIN_PART_SIZE, cancel=cancel)
        # The stop arrives once the first part is in S3 (boto3's own event hook on the real client).
        offsite.bucket.client.meta.events.register("after-call.s3.UploadPart", lambda **kwargs: cancel.set())

        assert offsite.upload_backlog() == 0
        client = s3_server.client()
        assert client.list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads", []) == []
        keys = [item["Key"] for item in client.list_objects_v2(Bucket=s3_server.bucket).get("Contents", ())]
        assert keys == [CLAIM_NAME]  # the prefix's claim (storage/s3_claim.py), and no copy
        assert metrics.registry.get_sample_value("pgbackup_s3_upload_failures_total",
                                                 {"kind": "full", "target": "all"}) in (None, 0)
        [after] = scan_manifests(backup_dir).manifests
        assert after.offsite.get("status") is None
