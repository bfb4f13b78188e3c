"""The WAL monitor against a real PostgreSQL 15 container and a real `pgbackup run`: receive lag,
slot retention and the recovery point on /metrics follow the server, and /healthz reports a
receiver that stopped reading once the slot keeps more than WAL_SLOT_RETAINED_MAX_BYTES and
recovery reaches further back than WAL_MAX_LAG_SECONDS."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
import structlog

from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.wal.monitor import RETENTION_PROBLEM, RPO_PROBLEM, WalMonitor
from tests.integration.test_daemon import get, sample, wait_until
from tests.integration.test_wal_streaming import (
    FAR_AWAY,
    allow_replication,
    receiver_pids,
    running_daemon,
    switch_wal,
)
from tests.support import docker_env
from tests.support.pgbackup_cli import exec_env, pgbackup
from tests.support.postgres import start_postgres

SLOT = "pgbackup"
RETAINED_MAX_BYTES = 16 * 1024 * 1024  # the lowest WAL_SLOT_RETAINED_MAX_BYTES allows
MAX_LAG_SECONDS = 30  # the lowest WAL_MAX_LAG_SECONDS allows
POLLS = 60  # seconds: a few polls of the monitor (every 15 s) and scrapes


@pytest.fixture(scope="module")
def server(docker_client, postgres_image):
    server = start_postgres(docker_client, postgres_image, databases=("appdb",))
    try:
        allow_replication(server)
        server.psql("CREATE TABLE ticks (seq int NOT NULL, at timestamptz NOT NULL)", db="appdb")
        yield server
    finally:
        docker_env.remove_container(server.container)


@pytest.fixture(scope="module")
def daemon(server, tmp_path_factory):
    """`pgbackup run` streaming WAL, with low limits for retention and the recovery point."""
    backup_dir = tmp_path_factory.mktemp("wal-monitoring")
    port = docker_env.free_port()
    env = exec_env(server, backup_dir, POSTGRES_PASSWORD=server.password, WAL_STREAMING="on",
                   METRICS_PORT=str(port), SCHEDULE_FULL=FAR_AWAY, SCHEDULE_DATABASES=FAR_AWAY,
                   SCHEDULE_RETENTION=FAR_AWAY, SCHEDULE_BASE=FAR_AWAY, SCHEDULE_RESTORE_TEST="off",
                   WAL_SLOT_RETAINED_MAX_BYTES=str(RETAINED_MAX_BYTES), WAL_MAX_LAG_SECONDS=str(MAX_LAG_SECONDS))
    log_path = backup_dir.parent / f"{backup_dir.name}-daemon.log"
    with running_daemon(env, log_path) as process:
        wait_until(lambda: metric(port, "pgbackup_wal_receiver_up") == 1, 60, "the receiver to stream")
        yield env, port, process


def metrics_text(port: int) -> str:
    try:
        return get(port, "/metrics")[1]
    except OSError:  # not listening yet
        return ""


def metric(port: int, name: str, **labels: str) -> float | None:
    return sample(metrics_text(port), name, slot=SLOT, **labels)


def problems(port: int) -> dict[str, str]:
    status, body = get(port, "/healthz")
    return {entry["problem"]: entry["detail"] for entry in json.loads(body)["problems"]}


def write_wal(server, rows: int) -> None:
    server.psql(f"INSERT INTO ticks SELECT g, clock_timestamp() FROM generate_series(1, {rows}) g", db="appdb")


@contextmanager
def receiver_stopped(daemon_pid: int) -> Iterator[None]:
    """pg_receivewal frozen (SIGSTOP): connected, but it reads, flushes and reports nothing."""
    pids = wait_until(lambda: receiver_pids(daemon_pid), 30, "the pg_receivewal process")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


class TestWalMonitor:
    def test_lag_returns_to_zero_and_the_recovery_point_is_now_after_writes_and_a_switch(self, server, daemon):
        """With streaming running, after writes and pg_switch_wal the receive lag is 0 bytes again, the
        recovery point moves past the writes although the server is idle then, the slot keeps little
        WAL, its wal_status is published, and `wal status --json` shows the same."""
        env, port, _ = daemon
        write_wal(server, 20000)
        switch_wal(server)
        written_at = time.time()
        wait_until(lambda: metric(port, "pgbackup_wal_receive_lag_bytes") == 0
                   and (metric(port, "pgbackup_wal_recoverable_until_timestamp_seconds") or 0) > written_at,
                   POLLS, "lag 0 and a recovery point after the writes")
        retained = metric(port, "pgbackup_wal_slot_retained_bytes")
        assert retained is not None and retained < RETAINED_MAX_BYTES
        assert metric(port, "pgbackup_wal_slot_retained_max_bytes") == RETAINED_MAX_BYTES
        assert metric(port, "pgbackup_wal_max_lag_seconds") == MAX_LAG_SECONDS
        assert metric(port, "pgbackup_wal_slot_status", wal_status="reserved") == 1
        assert metric(port, "pgbackup_wal_slot_status", wal_status="lost") == 0
        assert RETENTION_PROBLEM not in problems(port) and RPO_PROBLEM not in problems(port)

        def past_the_last_arrival() -> bool:
            """Nothing arrived for a while, yet the point is the latest poll: later than any WAL received."""
            text = metrics_text(port)
            until = sample(text, "pgbackup_wal_recoverable_until_timestamp_seconds", slot=SLOT)
            received = sample(text, "pgbackup_wal_last_received_timestamp_seconds", slot=SLOT)
            return until is not None and received is not None and until > received + 1

        wait_until(past_the_last_arrival, 2 * POLLS, "the recovery point to pass the last WAL arrival")

        def slot_status() -> dict:
            return json.loads(pgbackup("wal", "status", "--json", env=env).stdout)["slot"]

        slot = wait_until(lambda: (found := slot_status())["receive_lag_bytes"] == 0 and found, POLLS,
                          "wal status to show lag 0")  # autovacuum may write a little meanwhile
        assert slot["retained_max_bytes"] == RETAINED_MAX_BYTES and slot["wal_status"] == "reserved"
        assert slot["recoverable_until"] == slot["checked_at"] and slot["active"]

    def test_a_stopped_receiver_makes_retention_grow_until_healthz_reports_it(self, server, daemon):
        """With pg_receivewal frozen and writes going on, the slot's retained bytes and the lag grow past
        WAL_SLOT_RETAINED_MAX_BYTES, /healthz reports the retention and then the recovery point older than
        WAL_MAX_LAG_SECONDS; once the receiver goes on, both clear and the lag is 0 again."""
        _, port, process = daemon
        with receiver_stopped(process.pid):
            before = metric(port, "pgbackup_wal_slot_retained_bytes")
            write_wal(server, 400000)  # about 30 MB of WAL
            switch_wal(server)
            wait_until(lambda: (metric(port, "pgbackup_wal_slot_retained_bytes") or 0) > RETAINED_MAX_BYTES,
                       POLLS, "the retained WAL to pass the limit")
            assert metric(port, "pgbackup_wal_slot_retained_bytes") > before
            assert metric(port, "pgbackup_wal_receive_lag_bytes") > RETAINED_MAX_BYTES
            status, _ = get(port, "/healthz")
            assert status == 503
            assert "WAL_SLOT_RETAINED_MAX_BYTES" in problems(port)[RETENTION_PROBLEM]
            detail = wait_until(lambda: problems(port).get(RPO_PROBLEM), MAX_LAG_SECONDS + POLLS,
                                "/healthz to report the recovery point")
            assert "WAL_MAX_LAG_SECONDS (30 s)" in detail
        wait_until(lambda: metric(port, "pgbackup_wal_receive_lag_bytes") == 0
                   and not {RETENTION_PROBLEM, RPO_PROBLEM} & set(problems(port)), 2 * POLLS,
                   "the receiver to catch up and /healthz to clear")


class TestBaseFreshness:
    def test_a_base_backup_is_published_like_every_kind_with_its_allowance(self, daemon):
        """`pgbackup backup base` appears in pgbackup_last_success_timestamp_seconds{kind="base"}, and the
        scheduled base kind has its allowance (BACKUP_MAX_AGE_HOURS), which PgBackupStale applies."""
        env, port, _ = daemon
        started = time.time()
        result = pgbackup("backup", "base", env=env)
        assert result.returncode == 0, result.stderr
        newest = wait_until(lambda: sample(metrics_text(port), "pgbackup_last_success_timestamp_seconds",
                                           kind="base", target="cluster"), 30, "the base backup on /metrics")
        assert newest >= started - 5
        assert sample(metrics_text(port), "pgbackup_kind_max_age_seconds", kind="base") == 24 * 3600


class TestUnreachableServer:
    def test_a_failed_poll_is_logged_and_counted_and_the_monitor_goes_on(self, tmp_path):
        """With nothing listening at the server's address, each poll fails: logged as wal_monitor_failed,
        counted, and the thread keeps polling until the daemon stops; no figure is invented."""
        port = docker_env.free_port()
        settings = Settings(POSTGRES_HOST="127.0.0.1", POSTGRES_PORT=port, POSTGRES_PASSWORD="x",
                            BACKUP_DIR=tmp_path, WAL_STREAMING=True)
        metrics, health, cancel = Metrics(), HealthState(datetime.now(timezone.utc), timedelta(hours=24)), \
            threading.Event()
        with structlog.testing.capture_logs() as logs:
            thread = WalMonitor(settings, metrics, health, interval=0.2).start(cancel)
            try:
                wait_until(lambda: metrics.registry.get_sample_value("pgbackup_wal_monitor_failures_total") >= 3,
                           60, "three failed polls")
            finally:
                cancel.set()
                thread.join(timeout=30)
        assert not thread.is_alive()
        failed = [entry for entry in logs if entry["event"] == "wal_monitor_failed"]
        assert len(failed) >= 3 and str(port) in failed[0]["error"]
        assert metrics.registry.get_sample_value("pgbackup_wal_receive_lag_bytes", {"slot": SLOT}) is None
        assert metrics.registry.get_sample_value("pgbackup_wal_max_lag_seconds", {"slot": SLOT}) == 300
        assert health.problem(RPO_PROBLEM) is None  # nothing was ever received: the streaming problem's case
