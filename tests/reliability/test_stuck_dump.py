"""A dump blocked behind a lock, and a run that overruns its deadline: real PostgreSQL, the
daemon's own runner. Neither may hold the backup lock indefinitely."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator

import pytest

from daemon.backup.outcome import RunOutcome
from daemon.manifest import scan_manifests
from daemon.naming import is_partial
from tests.support import docker_env
from tests.support.postgres import DEFAULT_DATABASES, PgServer, start_postgres
from tests.support.runner import equipped
from tests.support.sample_data import seed

HOLDER = "lock-holder"
FINISH_WITHIN = 60  # seconds: "promptly" for a run whose limit is a few seconds


@pytest.fixture(scope="module")
def source(docker_client, postgres_image) -> Iterator[PgServer]:
    """One seeded server for the module: each test backs up into its own BACKUP_DIR."""
    server = start_postgres(docker_client, postgres_image, databases=DEFAULT_DATABASES, password="secret")
    seed(server)
    yield server
    docker_env.remove_container(server.container)


def hold_access_exclusive(source: PgServer, table: str, database: str) -> None:
    """An open transaction holding ACCESS EXCLUSIVE on ``table`` until release_lock()."""
    sql = f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3600);"
    source.container.exec_run(["psql", "-X", "-U", source.user, "-d", database, "-c", sql], user="postgres",
                              environment={"PGAPPNAME": HOLDER}, detach=True)
    deadline = time.monotonic() + 30
    while source.psql(f"SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                      f"WHERE a.application_name = '{HOLDER}' AND l.mode = 'AccessExclusiveLock' AND l.granted") == "0":
        assert time.monotonic() < deadline, "the lock holder did not get its lock"
        time.sleep(0.2)


def release_lock(source: PgServer) -> None:
    source.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{HOLDER}'")


def run_within(runner, seconds: float, *args: str) -> tuple[RunOutcome | None, float]:
    """The run's outcome if it ended within ``seconds`` (else None), and how long it took."""
    results: list[RunOutcome] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: results.append(runner.run(*args)), daemon=True)
    thread.start()
    thread.join(seconds)
    return (results[0] if results else None), time.monotonic() - started


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def failures_counted(metrics, kind: str, target: str) -> float:
    return metrics.runs.labels(kind, target, "failure")._value.get()


class TestDumpBehindALock:
    def test_the_dump_gives_up_after_the_lock_wait_timeout_and_says_so(self, source, tmp_path):
        """With ACCESS EXCLUSIVE held on authdb.users in an open transaction and DUMP_LOCK_WAIT_TIMEOUT_SECONDS=2,
        the run fails within a minute with a message naming the lock wait and the setting; the failure is
        counted; the earlier backup is intact, no partial file is left; the next run, the lock gone, works."""
        backup_dir = tmp_path / "backups"
        runner, metrics = equipped(source, backup_dir, dump_lock_wait_timeout_seconds=2)
        earlier = runner.run("database", "authdb")
        assert earlier.ok, earlier.failures
        (kept,) = earlier.artifacts
        kept_sha = sha256(backup_dir / kept.file)

        hold_access_exclusive(source, "users", "authdb")
        try:
            outcome, took = run_within(runner, FINISH_WITHIN, "database", "authdb")
        finally:
            release_lock(source)
        assert outcome is not None, f"the dump still waited for the lock after {FINISH_WITHIN} s"
        assert not outcome.ok
        (failure,) = outcome.failures
        assert "lock" in failure.error and "DUMP_LOCK_WAIT_TIMEOUT_SECONDS=2" in failure.error, failure.error
        assert "users" in failure.error
        assert failures_counted(metrics, "database", "authdb") == 1
        assert sha256(backup_dir / kept.file) == kept_sha
        assert [m.file for m in scan_manifests(backup_dir).manifests] == [kept.file]
        assert not [p.name for p in backup_dir.iterdir() if is_partial(p.name)]

        after = runner.run("database", "authdb")
        assert after.ok, after.failures


class TestRunDeadline:
    def test_a_run_past_its_deadline_is_stopped_and_fails_saying_so(self, source, tmp_path):
        """A run of every database with RUN_DEADLINE_SECONDS=1 and a dump that takes longer is stopped: it
        fails within a minute with a message naming the deadline, every target left is failed with it (counted),
        nothing partial is left, and a run with a generous deadline then works.

        The long dump is apidb's, held behind another session's lock (the lock wait timeout stays at its
        10-minute default): a dump made long by size alone finished within a second on a fast machine and
        raced the deadline."""
        source.psql("CREATE TABLE IF NOT EXISTS bulk AS SELECT g, repeat(md5(g::text), 8) AS body "
                    "FROM generate_series(1, 1000) AS g;", db="apidb")
        backup_dir = tmp_path / "backups"
        runner, metrics = equipped(source, backup_dir, run_deadline_seconds=1, backup_format="plain")

        hold_access_exclusive(source, "bulk", "apidb")
        try:
            outcome, took = run_within(runner, FINISH_WITHIN, "databases")
        finally:
            release_lock(source)
        assert outcome is not None, f"the run went on past its deadline for {FINISH_WITHIN} s"
        assert not outcome.ok
        assert outcome.failures, outcome
        for failure in outcome.failures:
            assert "RUN_DEADLINE_SECONDS=1" in failure.error, failure.error
        failed = {failure.target for failure in outcome.failures}
        assert "apidb" in failed
        for target in failed:
            assert failures_counted(metrics, "database", target) == 1
        assert not [p.name for p in backup_dir.iterdir() if is_partial(p.name)]

        runner, _ = equipped(source, backup_dir, backup_format="plain")
        after = runner.run("databases")
        assert after.ok, after.failures
