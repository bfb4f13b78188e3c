"""WAL_SYNCHRONOUS=on against real PostgreSQL 15 containers: `wal setup --apply` names the receiver
only once it streams; then a commit waits while the receiver is down and returns when it is back,
and after `docker kill` of the database mid-write `restore point-in-time --latest` brings back every
row the writer saw committed. With WAL_STREAMING off, a server that still waits for the receiver is
reported, and `wal setup --apply` undoes it."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from tests.integration.test_daemon import get, wait_until
from tests.integration.test_wal_streaming import FAR_AWAY, allow_replication, running_daemon
from tests.support import docker_env
from tests.support.pgbackup_cli import exec_env, log_events, pgbackup
from tests.support.postgres import start_postgres

RECEIVER_IS_SYNC = ("SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pgbackup_wal' "
                    "AND sync_state = 'sync'")
RECEIVER_STREAMS = ("SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pgbackup_wal' "
                    "AND state = 'streaming'")

WAITING_COMMIT = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep' "
                  "AND query LIKE 'INSERT INTO ticks%'")


def commit_row(server, seq: int) -> bool:
    """One INSERT in its own transaction over TCP from here; True once the server confirmed the commit."""
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
         f"INSERT INTO ticks (seq, at) VALUES ({seq}, clock_timestamp())", server.dsn("appdb")],
        capture_output=True, timeout=120, env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )
    return result.returncode == 0


class ConfirmedWriter:
    """Commits rows 1, 2, 3 … one at a time every 50 ms and keeps those whose commit returned."""

    def __init__(self, server):
        self.server = server
        self.confirmed: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            seq += 1
            if not commit_row(self.server, seq):
                return  # the server is gone: nothing after this was confirmed
            self.confirmed.append(seq)
            time.sleep(0.05)

    def __enter__(self) -> ConfirmedWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


def synchronous_source(postgres_factory):
    server = postgres_factory(databases=("appdb",))
    allow_replication(server)
    server.psql("CREATE TABLE ticks (seq int NOT NULL, at timestamptz NOT NULL)", db="appdb")
    return server


def synchronous_env(server, backup_dir: Path, **extra: str) -> dict[str, str]:
    return exec_env(server, backup_dir, POSTGRES_PASSWORD=server.password, WAL_STREAMING="on",
                    WAL_SYNCHRONOUS="on", SCHEDULE_FULL=FAR_AWAY, SCHEDULE_DATABASES=FAR_AWAY,
                    SCHEDULE_BASE=FAR_AWAY, SCHEDULE_RESTORE_TEST="off", METRICS_PORT=str(docker_env.free_port()),
                    **extra)


def apply_while_streaming(server, env: dict[str, str]) -> None:
    """`wal setup --apply` once the receiver streams: the receiver becomes the synchronous standby."""
    wait_until(lambda: server.psql(RECEIVER_STREAMS) == "1", 60, "the receiver to stream")
    applied = pgbackup("wal", "setup", "--apply", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "APPLIED: synchronous_standby_names = 'pgbackup_wal' (ALTER SYSTEM)" in applied.stdout, applied.stdout
    assert "synchronous_commit = 'on': a commit returns once the sidecar has written its WAL and flushed" \
        in applied.stdout
    wait_until(lambda: server.psql(RECEIVER_IS_SYNC) == "1", 30, "the receiver as synchronous standby")


class TestSetupAndWaiting:
    def test_applied_only_while_streaming_then_a_commit_waits_for_a_stopped_receiver(self, postgres_factory,
                                                                                     tmp_path):
        """Before the receiver streams, --apply leaves synchronous_standby_names alone and the daemon's
        /healthz says zero loss is not in effect; once it streams --apply sets it; with the daemon stopped a
        commit does not return (it waits on SyncRep), and it returns once the daemon streams again."""
        server = synchronous_source(postgres_factory)
        env = synchronous_env(server, tmp_path)
        early = pgbackup("wal", "setup", "--apply", env=env)
        assert early.returncode == 1, early.stdout + early.stderr
        assert "NOT APPLIED: synchronous_standby_names not set yet: the receiver ('pgbackup_wal') does not " \
            "stream" in early.stdout
        assert "MISSING: synchronous_standby_names is '': commits do not wait for the sidecar" in early.stdout
        assert server.psql("SHOW synchronous_standby_names") == ""

        port = int(env["METRICS_PORT"])
        with running_daemon(env, tmp_path / "first.log"):
            status, body = wait_until(lambda: _health_reporting(port, "wal_synchronous_setting"), 60,
                                      "/healthz to report the setting")
            assert status == 503 and "WAL_SYNCHRONOUS=on has no effect" in body
            apply_while_streaming(server, env)
            server.psql("INSERT INTO ticks VALUES (0, clock_timestamp())", db="appdb")  # streams: returns
        events = log_events((tmp_path / "first.log").read_text())
        assert any(e.get("event") == "wal_synchronous_wrong" for e in events)

        waiting = threading.Thread(target=commit_row, args=(server, 1), daemon=True)
        waiting.start()
        wait_until(lambda: server.psql(WAITING_COMMIT) == "1" or not waiting.is_alive(), 30,
                   "the commit to wait for the synchronous standby")
        waiting.join(timeout=2)
        assert waiting.is_alive(), "the commit returned although no receiver ran"
        assert server.psql(WAITING_COMMIT) == "1"
        with running_daemon(env, tmp_path / "second.log"):
            waiting.join(timeout=90)
            assert not waiting.is_alive(), "the commit did not return after the receiver came back"
        assert server.psql("SELECT count(*) FROM ticks WHERE seq = 1", db="appdb") == "1"


class TestZeroLoss:
    def test_every_row_seen_committed_survives_docker_kill(self, docker_client, postgres_image, postgres_factory,
                                                           docker_volume_factory, tmp_path):
        """With the receiver as synchronous standby, a writer commits a row every 50 ms, the database is
        `docker kill`ed mid-write, and `restore point-in-time --latest` brings back every row whose commit
        returned to the writer."""
        server = synchronous_source(postgres_factory)
        env = synchronous_env(server, tmp_path)
        with running_daemon(env, tmp_path / "daemon.log"):
            apply_while_streaming(server, env)
            base = pgbackup("backup", "base", env=env)
            assert base.returncode == 0, base.stderr
            with ConfirmedWriter(server) as writer:
                wait_until(lambda: len(writer.confirmed) >= 40, 60, "40 confirmed commits")
                server.container.kill()
                writer.thread.join(timeout=120)
            assert len(writer.confirmed) >= 40

            volume = docker_volume_factory("pgbackup-test-zero-loss")
            result = pgbackup("restore", "point-in-time", "--latest", "--volume", volume, "--image", postgres_image,
                              env=env)
            assert result.returncode == 0, result.stderr
        restored = start_postgres(docker_client, postgres_image, databases=(), volume=volume,
                                  password=server.password)
        try:
            rows = {int(seq) for seq in restored.psql("SELECT seq FROM ticks", db="appdb").split()}
        finally:
            docker_env.remove_container(restored.container)
        missing = sorted(set(writer.confirmed) - rows)
        assert missing == [], f"{len(missing)} confirmed commits lost: {missing[:10]}"


class TestTurnedOff:
    def test_streaming_off_while_the_server_waits_for_the_receiver_is_reported_and_undone_by_apply(
            self, postgres_factory, tmp_path):
        """An earlier install streamed (BACKUP_DIR/wal/ exists) and the server still names the receiver: the
        daemon with WAL_STREAMING off logs that commits hang and /healthz says so; `wal setup --apply` resets
        synchronous_standby_names (and creates no slot), and commits return again."""
        server = synchronous_source(postgres_factory)
        (tmp_path / "wal").mkdir()
        server.psql("ALTER SYSTEM SET synchronous_standby_names = 'pgbackup_wal'")
        server.psql("SELECT pg_reload_conf()")
        wait_until(lambda: server.psql("SHOW synchronous_standby_names") == "pgbackup_wal", 10, "the reload")
        env = exec_env(server, tmp_path, POSTGRES_PASSWORD=server.password, SCHEDULE_FULL=FAR_AWAY,
                       SCHEDULE_DATABASES=FAR_AWAY, METRICS_PORT=str(docker_env.free_port()))
        port = int(env["METRICS_PORT"])
        with running_daemon(env, tmp_path / "off.log"):
            status, body = wait_until(lambda: _health_reporting(port, "wal_synchronous_setting"), 60,
                                      "/healthz to report the hanging commits")
            assert status == 503 and "COMMITS ON THE SERVER HANG" in body
        wrong = [e for e in log_events((tmp_path / "off.log").read_text()) if e.get("event") == "wal_synchronous_wrong"]
        assert wrong and wrong[0]["level"] == "error" and "ALTER SYSTEM RESET synchronous_standby_names" \
            in wrong[0]["change"]

        applied = pgbackup("wal", "setup", "--apply", env=env)
        assert "APPLIED: synchronous_standby_names reset (ALTER SYSTEM)" in applied.stdout, applied.stdout
        assert "APPLIED: slot" not in applied.stdout  # streaming was turned off: no slot for nobody to read
        assert server.psql("SELECT count(*) FROM pg_replication_slots") == "0"
        assert server.psql("SHOW synchronous_standby_names") == ""
        returned = threading.Thread(target=commit_row, args=(server, 1), daemon=True)
        returned.start()
        returned.join(timeout=30)
        assert not returned.is_alive()
        assert server.psql("SELECT count(*) FROM ticks WHERE seq = 1", db="appdb") == "1"


def _health_reporting(port: int, problem: str) -> tuple[int, str] | None:
    try:
        status, body = get(port, "/healthz")
    except OSError:
        return None
    return (status, body) if problem in body else None
