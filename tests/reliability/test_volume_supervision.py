"""Issue 17 item 4: a volume snapshot must not leave the database down, nor start one an operator
stopped on purpose.

Real Docker, a real PostgreSQL container on a real named volume, the real daemon (``pgbackup
run``) and a real HTTP receiver for WEBHOOK_URL. The snapshot code stops the database and writes
its record of stopped containers; the sidecar "dies" there (nothing starts it again), and a fresh
daemon starts from that record. Before the fix a fresh daemon started the container once without
waiting for PostgreSQL, called that a success and cleared the record even when the server exited
a second later (nothing said "database down", the next attempt was next week's snapshot); and it
started containers from a record of any age.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from daemon.errors import Cancelled
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.service import equipped_runner
from daemon.settings import Settings
from daemon.volumes.containers import STATE_FILE, ContainerRef, ContainerStopper
from daemon.volumes.helper import HelperContainer
from daemon.volumes.snapshot import run_volume_snapshot
from tests.support import docker_env
from tests.support.daemon_http import get, metric
from tests.support.pgbackup_cli import exec_env, log_events, start_pgbackup
from tests.support.webhook import RecordingServer

SNAPSHOT = "postgres_volume_20261129_020000.tar.gz"
BAD_SETTING = "shared_buffers = 'not-a-size'"
GAUGE = "pgbackup_database_stopped_by_sidecar"
FAILURES = "pgbackup_database_restart_failures_total"


@pytest.fixture
def database_on_volume(postgres_factory, docker_volume_factory):
    volume = docker_volume_factory("pgbackup-test-wt-volume")
    server = postgres_factory(volume=volume, databases=())
    server.psql("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)")
    return server, volume


@pytest.fixture
def receiver():
    server = RecordingServer()
    yield server
    server.close()


def stop_like_a_snapshot(docker_client, server, volume: str, backup_dir: Path, stopped_at: datetime) -> None:
    """The snapshot code up to the stop: the record written, the container stopped; then the sidecar dies."""
    stopper = ContainerStopper(docker_client, backup_dir, volume, 30, lambda: stopped_at,
                               snapshot=SNAPSHOT, run_id="run-that-died")
    stopper.stop([ContainerRef(server.container.id, server.name)])
    assert status(server) == "exited" and (backup_dir / STATE_FILE).exists()


def edit_config(docker_client, image: str, volume: str, script: str) -> None:
    """Change postgresql.conf in the volume in place (its owner and mode stay)."""
    docker_env.run_to_completion(docker_client, image, entrypoint=["sh", "-c", script],
                                 volumes={volume: {"bind": "/v", "mode": "rw"}})


def break_config(docker_client, image: str, volume: str) -> None:
    """PostgreSQL now exits at start with 'invalid value for parameter shared_buffers'."""
    edit_config(docker_client, image, volume, f'echo "{BAD_SETTING}" >> /v/postgresql.conf')


def repair_config(docker_client, image: str, volume: str) -> None:
    edit_config(docker_client, image, volume,
                "grep -v not-a-size /v/postgresql.conf > /tmp/conf && cat /tmp/conf > /v/postgresql.conf")


def status(server) -> str:
    server.container.reload()
    return server.container.status


def wait_for(condition: Callable[[], object], timeout: float, what: str, daemon=None) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert daemon is None or daemon.poll() is None, f"the daemon exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.5)


def health_problem(port: int) -> dict | None:
    code, body = get(port, "/healthz")
    if code == 0:
        return None
    problems = [p for p in json.loads(body)["problems"] if p["problem"] == "database_stopped_by_sidecar"]
    return {"code": code, **problems[0]} if problems else {"code": code}


def metrics_value(port: int, name: str, container: str) -> float | None:
    code, body = get(port, "/metrics")
    return metric(body, name, f'container="{container}"') if code == 200 else None


def start_daemon(server, volume: str, backup_dir: Path, port: int, receiver: RecordingServer) -> subprocess.Popen:
    env = exec_env(server, backup_dir, VOLUME_NAME=volume, METRICS_PORT=str(port), WEBHOOK_URL=receiver.url("/hook"))
    return start_pgbackup("run", env=env)


def stop_daemon(daemon: subprocess.Popen) -> list[dict]:
    daemon.terminate()
    stdout, stderr = daemon.communicate(timeout=120)
    print(stdout, stderr)  # shown when the test fails
    return log_events(stdout)


def daemon_parts(settings: Settings, docker_client) -> tuple:
    """What a daemon assembles: runner, jobs, metrics and health (its start-up look at the record included)."""
    metrics = Metrics()
    health = HealthState(datetime.now(settings.timezone), timedelta(hours=24))
    runner, jobs = equipped_runner(settings, metrics, health, docker_client=docker_client)
    runner.progress_stream = io.StringIO()
    return runner, jobs, metrics, health


class TestRestartThatFails:
    def test_is_retried_with_back_off_and_reported_until_the_database_runs(
        self, database_on_volume, docker_client, receiver, tmp_path
    ):
        """A fresh daemon whose start of the recorded container fails (PostgreSQL exits at start) keeps
        trying with back-off; meanwhile /healthz is 503 naming the container, the gauge is 1, failures
        are counted, each attempt is logged and one notification names the container. Once the cause is
        fixed the next attempt starts it, the record is cleared and everything reads healthy again."""
        server, volume = database_on_volume
        stop_like_a_snapshot(docker_client, server, volume, tmp_path, datetime.now().astimezone())
        break_config(docker_client, server.image, volume)
        port = docker_env.free_port()
        daemon = start_daemon(server, volume, tmp_path, port, receiver)
        events: list[dict] = []
        try:
            problem = wait_for(lambda: (p := health_problem(port)) and "detail" in p and p, 120,
                               "the /healthz problem", daemon)
            assert problem["code"] == 503
            assert server.name in problem["detail"] and "DOWN" in problem["detail"] and SNAPSHOT in problem["detail"]
            assert metrics_value(port, GAUGE, server.name) == 1
            assert receiver.arrived.wait(30), "no notification"
            notice = receiver.requests[0].body
            assert notice["status"] == "failure" and notice["failures"][0]["target"] == server.name
            assert "could not be started again" in notice["failures"][0]["reason"]

            # Retried: a second failed attempt after the back-off, the container still down.
            wait_for(lambda: (metrics_value(port, FAILURES, server.name) or 0) >= 2, 90, "a retry", daemon)
            assert status(server) != "running" and (tmp_path / STATE_FILE).exists()
            assert len(receiver.requests) == 1  # one notice per change of state, not one per attempt

            repair_config(docker_client, server.image, volume)
            wait_for(lambda: status(server) == "running" and not (tmp_path / STATE_FILE).exists(), 180,
                     "the retry that starts the repaired database", daemon)
            wait_for(lambda: health_problem(port) == {"code": 200}, 30, "/healthz healthy again", daemon)
            assert metrics_value(port, GAUGE, server.name) == 0
        finally:
            events = stop_daemon(daemon)
        server.wait_ready(60)
        assert server.psql("SELECT count(*) FROM kept") == "1"
        failed = [e for e in events if e["event"] == "database_restart_failed"]
        assert len(failed) >= 2 and all(e["container"] == server.name and e["snapshot"] == SNAPSHOT for e in failed)
        assert "exited" in failed[0]["error"]
        assert any(e["event"] == "database_restarted" and e["container"] == server.name for e in events)


class TestRestartAfterASnapshot:
    def test_a_database_that_does_not_come_back_is_retried_by_the_daemon_job(
        self, database_on_volume, docker_client, receiver, tmp_path
    ):
        """A snapshot whose own start of the database fails (postgresql.conf was edited while the server
        ran; it reads it only at start) fails its run and leaves the record; the daemon's volume_restart
        job then reports the container down and keeps trying until the repaired server runs."""
        server, volume = database_on_volume
        break_config(docker_client, server.image, volume)  # the running server has not read it
        settings = Settings(postgres_container=server.name, postgres_user=server.user, volume_name=volume,
                            backup_dir=tmp_path, webhook_url=receiver.url("/hook"), volume_stop_timeout_seconds=30,
                            _env_file=None)
        runner, jobs, metrics, health = daemon_parts(settings, docker_client)
        (restart_job,) = [job for job in jobs if job.job_id == "volume_restart"]

        outcome = run_volume_snapshot(runner, settings, docker_client)
        assert not outcome.ok and "did not come back" in outcome.failures[0].error
        assert len(list(tmp_path.glob("postgres_volume_*.tar.gz"))) == 1  # the copy itself is good and kept
        assert status(server) == "exited" and (tmp_path / STATE_FILE).exists()

        restart_job.func()  # its first look after the run: an attempt is due at once
        assert server.name in health.problem("database_stopped_by_sidecar")
        assert metrics.registry.get_sample_value(GAUGE, {"container": server.name}) == 1
        assert metrics.registry.get_sample_value(FAILURES, {"container": server.name}) == 1
        assert any(failure["target"] == server.name for request in receiver.requests
                   for failure in request.body["failures"])
        restart_job.func()  # within the back-off: no new attempt
        assert metrics.registry.get_sample_value(FAILURES, {"container": server.name}) == 1

        repair_config(docker_client, server.image, volume)
        wait_for(lambda: restart_job.func() or status(server) == "running", 60, "the retry after the back-off")
        assert not (tmp_path / STATE_FILE).exists() and health.problem("database_stopped_by_sidecar") is None
        assert metrics.registry.get_sample_value(GAUGE, {"container": server.name}) == 0
        server.wait_ready(60)
        assert server.psql("SELECT count(*) FROM kept") == "1"


class TestShutdownDuringASnapshot:
    def test_the_database_is_started_without_the_ready_wait_and_checked_by_the_next_daemon(
        self, database_on_volume, docker_client, tmp_path, monkeypatch
    ):
        """Stopped (cancel set, as SIGTERM does) during a snapshot, the daemon starts the database again
        without waiting for it to accept connections and ends within seconds (stop plus start fit
        compose's grace); it keeps the record, since readiness was not confirmed, and the next daemon
        finds the database running and clears it."""
        server, volume = database_on_volume
        settings = Settings(postgres_container=server.name, postgres_user=server.user, volume_name=volume,
                            backup_dir=tmp_path, volume_stop_timeout_seconds=30, _env_file=None)
        runner, _, _, _ = daemon_parts(settings, docker_client)
        ended: list[BaseException | object] = []

        def snapshot() -> None:
            try:
                ended.append(run_volume_snapshot(runner, settings, docker_client))
            except Cancelled as error:
                ended.append(error)

        # The stop arrives while the copy streams, as SIGTERM would: right after the helper's first
        # block. Polling for the record from outside lost the race to a whole 0.5 s snapshot.
        stop_times: list[float] = []
        real_read_tar = HelperContainer.read_tar

        def read_tar_then_stop(helper: HelperContainer):
            for number, block in enumerate(real_read_tar(helper)):
                yield block
                if number == 0:
                    assert (tmp_path / STATE_FILE).exists(), "copying before the record of the stop"
                    stop_times.append(time.monotonic())
                    runner.cancel.set()

        monkeypatch.setattr(HelperContainer, "read_tar", read_tar_then_stop)
        thread = threading.Thread(target=snapshot, daemon=True)
        thread.start()
        thread.join(120)
        assert not thread.is_alive() and isinstance(ended[0], Cancelled), ended
        # Before the helper closed the abandoned archive stream, Docker held the helper's removal
        # until the client's 60 s timeout, and that timeout then replaced the cancellation.
        assert time.monotonic() - stop_times[0] < 30
        assert status(server) == "running" and (tmp_path / STATE_FILE).exists()
        assert not list(tmp_path.glob("postgres_volume_*.tar.gz"))

        _, _, metrics, health = daemon_parts(settings, docker_client)
        assert not (tmp_path / STATE_FILE).exists() and health.problem("database_stopped_by_sidecar") is None
        assert metrics.registry.get_sample_value(FAILURES, {"container": server.name}) is None
        server.wait_ready(60)


class TestStaleRecord:
    def test_is_left_alone_reported_and_cleared_once_the_container_runs(
        self, database_on_volume, docker_client, receiver, tmp_path
    ):
        """A record older than the bound (7 h) is not acted on: the container stays stopped, the daemon
        says which container a snapshot stopped when and why it was not started, /healthz, the gauge
        and a notification report it. Started by hand, the record is cleared and the problem goes."""
        server, volume = database_on_volume
        stopped_at = datetime.now().astimezone() - timedelta(hours=7)
        stop_like_a_snapshot(docker_client, server, volume, tmp_path, stopped_at)
        finished_at = server.container.attrs["State"]["FinishedAt"]
        port = docker_env.free_port()
        daemon = start_daemon(server, volume, tmp_path, port, receiver)
        events: list[dict] = []
        try:
            problem = wait_for(lambda: (p := health_problem(port)) and "detail" in p and p, 120,
                               "the /healthz problem", daemon)
            assert problem["code"] == 503 and "stale" in problem["detail"] and server.name in problem["detail"]
            assert stopped_at.isoformat() in problem["detail"]
            assert metrics_value(port, GAUGE, server.name) == 1
            assert receiver.arrived.wait(30), "no notification"
            assert "not started again automatically" in receiver.requests[0].body["failures"][0]["reason"]
            time.sleep(12)  # two ticks and more of the supervisor job
            assert status(server) == "exited" and server.container.attrs["State"]["FinishedAt"] == finished_at
            assert (tmp_path / STATE_FILE).exists()
            assert metrics_value(port, FAILURES, server.name) in (None, 0)  # no attempt was made

            server.start()  # the operator decides it should run
            wait_for(lambda: not (tmp_path / STATE_FILE).exists(), 60, "the record cleared", daemon)
            wait_for(lambda: health_problem(port) == {"code": 200}, 30, "/healthz healthy again", daemon)
            assert metrics_value(port, GAUGE, server.name) == 0
        finally:
            events = stop_daemon(daemon)
        stale = [e for e in events if e["event"] == "stopped_container_record_stale"]
        assert len(stale) == 1 and stale[0]["container"] == server.name and stale[0]["stopped_at"] == stopped_at.isoformat()
        assert not any(e["event"] == "restarting_containers_left_stopped" for e in events)
