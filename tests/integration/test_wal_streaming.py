"""Point-in-time recovery against a real PostgreSQL 15 container: the daemon streams WAL
(WAL_STREAMING=on), completed segments arrive compressed and checksummed, a killed receiver is
restarted without a gap, a base backup records its positions, and a base backup plus the
streamed WAL recover a new volume to a time between two commits."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.housekeeping.prune import locked_sweep, sweep
from daemon.manifest import read_manifest
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.volumes.containers import VolumeError
from daemon.wal.archive import read_records, wal_dir
from daemon.wal.backoff import Backoff
from daemon.wal.receiver import STREAMING_PROBLEM, WalReceiver
from daemon.wal.recovery import recover_into_volume
from daemon.wal.segments import DEFAULT_SEGMENT_SIZE, find_gaps, parse_segment
from tests.integration.test_daemon import get, sample, wait_until
from tests.support import docker_env
from tests.support.pgbackup_cli import REPO_ROOT, exec_env, log_events, pgbackup
from tests.support.postgres import start_postgres
from tests.support.s3 import S3Server

FAR_AWAY = "0 3 1 1 *"
HBA_REPLICATION = "host replication all all scram-sha-256"


def allow_replication(server) -> None:
    """The official image allows replication only from localhost: add the line `wal setup` names."""
    code, output = server.container.exec_run(["sh", "-c", f'echo "{HBA_REPLICATION}" >> "$PGDATA/pg_hba.conf"'])
    assert code == 0, output
    server.psql("SELECT pg_reload_conf()")


def archived_names(backup_dir: Path) -> list[str]:
    return sorted(record.name for record in read_records(backup_dir) if parse_segment(record.name))


def switch_wal(server) -> str:
    """Close the current segment (after a write, so that there is something to close); its name."""
    server.psql("INSERT INTO ticks (seq, at) VALUES (-1, clock_timestamp())", db="appdb")
    return server.psql("SELECT pg_walfile_name(pg_switch_wal())")


def receiver_pids(daemon_pid: int) -> list[int]:
    """pg_receivewal processes started by the daemon (its children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if name == "pg_receivewal" and int(rest[1]) == daemon_pid:
                pids.append(int(entry.name))
    return pids


class Writer:
    """Inserts (seq, clock_timestamp()) in its own transaction every 50 ms."""

    def __init__(self, server):
        self.server = server
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        script = ("DO $$ BEGIN FOR i IN 1..20 LOOP INSERT INTO ticks (seq, at) "
                  "SELECT coalesce(max(seq), 0) + 1, clock_timestamp() FROM ticks WHERE seq > 0; "
                  "COMMIT; PERFORM pg_sleep(0.05); END LOOP; END $$;")
        while not self.stop.is_set():
            self.server.psql(script, db="appdb")

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def wal_source(docker_client, postgres_image):
    server = start_postgres(docker_client, postgres_image, databases=("appdb",))
    try:
        allow_replication(server)
        server.psql("CREATE TABLE ticks (seq int NOT NULL, at timestamptz NOT NULL)", db="appdb")
        yield server
    finally:
        docker_env.remove_container(server.container)


@pytest.fixture(scope="module")
def wal_s3(tmp_path_factory):
    """One S3 server for the module's daemon: WAL and base backups go off-site."""
    server = S3Server(base_dir=tmp_path_factory.mktemp("wal-s3"))
    server.start()
    yield server
    server.kill()


def s3_env(server: S3Server) -> dict[str, str]:
    return {"S3_ENDPOINT_URL": server.endpoint_url, "S3_BUCKET": server.bucket, "S3_PREFIX": "prod",
            "AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}


@pytest.fixture(scope="module")
def streaming(wal_source, wal_s3, tmp_path_factory):
    """`pgbackup run` with WAL_STREAMING=on and S3; its log goes to a file (a pipe could fill up)."""
    backup_dir = tmp_path_factory.mktemp("wal-backups")
    port = docker_env.free_port()
    env = exec_env(wal_source, backup_dir, POSTGRES_PASSWORD=wal_source.password, WAL_STREAMING="on",
                   METRICS_PORT=str(port), SCHEDULE_FULL=FAR_AWAY, SCHEDULE_DATABASES=FAR_AWAY,
                   SCHEDULE_RETENTION=FAR_AWAY, SCHEDULE_BASE=FAR_AWAY, SCHEDULE_RESTORE_TEST="off",
                   **s3_env(wal_s3))
    log_path = backup_dir.parent / f"{backup_dir.name}-daemon.log"
    with running_daemon(env, log_path) as process:
        wait_until(lambda: sample(get(port, "/metrics")[1] if _listening(port) else "",
                                  "pgbackup_wal_receiver_up", slot="pgbackup") == 1, 60,
                   "the receiver to stream")
        yield backup_dir, env, port, process, log_path


def _listening(port: int) -> bool:
    try:
        get(port, "/healthz")
        return True
    except OSError:
        return False


class TestStreaming:
    def test_completed_segments_arrive_compressed_and_checksummed(self, wal_source, streaming, wal_s3):
        """After pg_switch_wal the closed segment is in BACKUP_DIR/wal/ as .gz with a record whose sha256,
        size and timeline match, and it decompresses to a whole segment; a copy of both goes to
        <prefix>/wal/ in S3; /healthz is ok and the last-received time is recent."""
        backup_dir, _, port, _, _ = streaming
        wal_source.psql("INSERT INTO ticks SELECT g, clock_timestamp() FROM generate_series(1, 5000) g", db="appdb")
        closed = switch_wal(wal_source)
        wait_until(lambda: closed in archived_names(backup_dir), 30, f"segment {closed} archived")
        record = next(r for r in read_records(backup_dir) if r.name == closed)
        data = (wal_dir(backup_dir) / record.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record.sha256 and len(data) == record.size_bytes
        assert len(gzip.decompress(data)) == DEFAULT_SEGMENT_SIZE == record.wal_size_bytes
        assert record.timeline == 1 and record.file == f"{closed}.gz"
        status, body = get(port, "/healthz")
        assert status == 200, body
        wait_until(lambda: next(r for r in read_records(backup_dir) if r.name == closed).offsite_key, 60,
                   "the segment copied to S3")
        client = wal_s3.client()
        assert client.get_object(Bucket=wal_s3.bucket, Key=f"prod/wal/{closed}.gz")["Body"].read() == data
        remote = json.loads(client.get_object(Bucket=wal_s3.bucket, Key=f"prod/wal/{closed}.json")["Body"].read())
        assert remote["sha256"] == record.sha256
        received = sample(get(port, "/metrics")[1], "pgbackup_wal_last_received_timestamp_seconds", slot="pgbackup")
        assert received is not None and time.time() - received < 60

    def test_a_killed_receiver_is_restarted_and_leaves_no_gap(self, wal_source, streaming):
        """pg_receivewal killed during writes: it is counted, started again, and the archived segments
        have no hole and no duplicate."""
        backup_dir, _, port, process, _ = streaming
        first = archived_names(backup_dir)
        with Writer(wal_source):
            pids = wait_until(lambda: receiver_pids(process.pid), 30, "the pg_receivewal process")
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            switch_wal(wal_source)  # written while no receiver runs: the slot keeps it
            wait_until(lambda: (sample(get(port, "/metrics")[1], "pgbackup_wal_receiver_restarts_total") or 0) >= 1,
                       30, "the restart counted")
            wait_until(lambda: [p for p in receiver_pids(process.pid) if p not in pids], 60, "a new pg_receivewal")
            time.sleep(1)
        last = switch_wal(wal_source)
        wait_until(lambda: last in archived_names(backup_dir), 60, f"segment {last} archived")
        names = archived_names(backup_dir)
        assert len(names) == len(set(names))
        assert len(names) >= len(first) + 2
        assert find_gaps(parse_segment(name) for name in names) == []
        status = pgbackup("wal", "status", "--json", env=streaming[1])
        assert status.returncode == 0, status.stdout + status.stderr
        summary = json.loads(status.stdout)
        assert summary["gaps"] == [] and summary["newest"] == names[-1]
        assert summary["slot"]["exists"] and summary["slot"]["active"]


class TestBaseBackupOffsite:
    def test_a_base_backup_is_copied_to_s3_like_every_other_kind(self, streaming, wal_s3):
        """With S3 on, `pgbackup backup base` puts base_*.tar.gz and its manifest under the prefix,
        the copy byte for byte the local file."""
        _, env, _, _, _ = streaming
        result = pgbackup("backup", "base", env=env)
        assert result.returncode == 0, result.stderr
        artifact = Path(result.stdout.strip())
        client = wal_s3.client()
        remote = client.get_object(Bucket=wal_s3.bucket, Key=f"prod/{artifact.name}")["Body"].read()
        assert remote == artifact.read_bytes()
        manifest = json.loads(client.get_object(Bucket=wal_s3.bucket,
                                                Key=f"prod/{artifact.name}.manifest.json")["Body"].read())
        assert manifest["kind"] == "base" and manifest["details"]["stop_lsn"]


class TestReceiverSupervision:
    def test_a_receiver_that_cannot_connect_is_reported_and_retried_with_back_off(self, tmp_path):
        """With nothing listening at the server's address, /healthz carries wal_streaming_stopped with the
        reason, each exit is counted, the receiver is started again after the back-off, and it stops
        when the daemon shuts down."""
        port = docker_env.free_port()
        settings = Settings(POSTGRES_HOST="127.0.0.1", POSTGRES_PORT=port, POSTGRES_PASSWORD="x",
                            BACKUP_DIR=tmp_path, WAL_STREAMING=True)
        metrics, health, cancel = Metrics(), HealthState(datetime.now(timezone.utc), timedelta(hours=24)), \
            threading.Event()
        receiver = WalReceiver(settings, metrics, health, cancel, backoff=Backoff(initial=0.1, maximum=0.2))
        thread = receiver.start()
        try:
            wait_until(lambda: metrics.registry.get_sample_value("pgbackup_wal_receiver_restarts_total") >= 3, 60,
                       "three restarts")
            problem = health.problem(STREAMING_PROBLEM)
            assert problem.startswith("WAL streaming stopped: ") and "127.0.0.1" in problem
            assert metrics.registry.get_sample_value("pgbackup_wal_receiver_up", {"slot": "pgbackup"}) == 0
        finally:
            cancel.set()
            thread.join(timeout=30)
        assert not thread.is_alive()


class TestBaseBackup:
    def test_base_backup_records_its_positions(self, streaming):
        """`pgbackup backup base` writes base_*.tar.gz with a manifest of kind base giving start and stop
        LSN, timeline and start time, and a tar that holds backup_label and the WAL it needs."""
        backup_dir, env, _, _, _ = streaming
        result = pgbackup("backup", "base", env=env)
        assert result.returncode == 0, result.stderr
        artifact = Path(result.stdout.strip())
        manifest = read_manifest(artifact.with_name(artifact.name + ".manifest.json"))
        assert manifest.kind == "base" and manifest.file.startswith("base_")
        details = manifest.details
        assert details["timeline"] == 1 and details["wal_method"] == "fetch"
        start, stop = (int(text.split("/")[0], 16) << 32 | int(text.split("/")[1], 16)
                       for text in (details["start_lsn"], details["stop_lsn"]))
        assert 0 < start <= stop
        assert parse_segment(details["start_segment"]) is not None
        assert details["start_time"].endswith("UTC")
        assert hashlib.sha256(artifact.read_bytes()).hexdigest() == manifest.sha256
        listing = subprocess.run(["tar", "-tzf", str(artifact)], capture_output=True, text=True, check=True).stdout
        assert "backup_label" in listing.split() and any(n.startswith("pg_wal/0000") for n in listing.split())
        assert any(e.get("event") == "artifact_written" for e in log_events(result.stdout + result.stderr))
        verified = pgbackup("verify", str(artifact), env=env)
        assert verified.returncode == 0 and "a PostgreSQL 15 data directory" in verified.stdout, verified.stdout


class TestPointInTimeRecovery:
    def test_base_plus_wal_recover_exactly_the_rows_committed_up_to_the_target(
            self, docker_client, postgres_image, wal_source, streaming, docker_volume_factory):
        """A base backup, then writes every 50 ms; recovery to a time between two commits brings back
        exactly the rows committed up to it, and the volume then starts as a normal server."""
        backup_dir, env, _, _, _ = streaming
        result = pgbackup("backup", "base", env=env)
        assert result.returncode == 0, result.stderr
        base_path = Path(result.stdout.strip())
        base = read_manifest(base_path.with_name(base_path.name + ".manifest.json"))
        with Writer(wal_source):
            time.sleep(4)
            switch_wal(wal_source)  # the target's WAL in a complete segment, the newest in the partial
            time.sleep(2)
        rows = [line.split("|") for line in wal_source.psql(
            f"SELECT seq, at FROM ticks WHERE seq > 0 AND at > '{base.finished_at.isoformat()}' ORDER BY seq",
            db="appdb").splitlines()]
        assert len(rows) > 20
        middle = len(rows) // 2
        earlier, later = (datetime.fromisoformat(rows[i][1]) for i in (middle, middle + 1))
        target = (earlier + (later - earlier) / 2).astimezone(timezone.utc)
        expected = wal_source.psql(f"SELECT count(*) FROM ticks WHERE at <= '{target.isoformat()}'", db="appdb")
        time.sleep(1.5)  # --synchronous: flushed; one more archive pass for good measure

        volume = docker_volume_factory("pgbackup-test-pitr")
        report = recover_into_volume(docker_client, backup_dir, base, volume, postgres_image, target,
                                     labels=docker_env.docker_labels())
        assert report.reached and report.segments_staged >= 1

        restored = start_postgres(docker_client, postgres_image, databases=(), volume=volume,
                                  password=wal_source.password)
        try:
            assert restored.psql("SELECT count(*) FROM ticks", db="appdb") == expected
            assert restored.psql("SELECT max(seq) FROM ticks", db="appdb") == rows[middle][0]
            assert restored.psql("SELECT pg_is_in_recovery()") == "f"
            assert restored.psql("SELECT count(*) FROM pg_ls_dir('.') AS f WHERE f IN "
                                 "('pgbackup_wal', 'recovery.signal')") == "0"
        finally:
            docker_env.remove_container(restored.container)

        with pytest.raises(VolumeError, match="--force"):  # as restore-volume: a volume with data needs --force
            recover_into_volume(docker_client, backup_dir, base, volume, postgres_image, target)


class TestSetup:
    def test_setup_names_the_missing_pg_hba_line_applies_it_and_streaming_off_drops_the_slot(
            self, postgres_factory, tmp_path):
        """Against the official image's pg_hba.conf `pgbackup wal setup` exits 1 naming the replication line;
        `--apply` adds it once, reloads and creates the slot (with reserved WAL); after streaming with it,
        the daemon started with WAL_STREAMING off drops that slot, and says so."""
        server = postgres_factory(databases=())
        env = exec_env(server, tmp_path, POSTGRES_PASSWORD=server.password, WAL_SLOT_NAME="leftover")
        result = pgbackup("wal", "setup", env=env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "MISSING: a replication connection as 'postgres' is refused" in result.stdout
        assert "host replication postgres samenet scram-sha-256" in result.stdout

        applied = pgbackup("wal", "setup", "--apply", env=env)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "APPLIED: pg_hba.conf" in applied.stdout and "APPLIED: slot 'leftover' created" in applied.stdout
        again = pgbackup("wal", "setup", "--apply", env=env)  # nothing left to do, nothing added twice
        assert again.returncode == 0 and "APPLIED" not in again.stdout, again.stdout
        _, hba = server.container.exec_run(["sh", "-c", 'cat "$PGDATA/pg_hba.conf"'])
        assert hba.decode().count("host replication postgres samenet scram-sha-256") == 1
        assert server.psql("SELECT slot_name FROM pg_replication_slots WHERE restart_lsn IS NOT NULL") == "leftover"

        daemon_env = {**env, "SCHEDULE_FULL": FAR_AWAY, "SCHEDULE_DATABASES": FAR_AWAY, "SCHEDULE_BASE": FAR_AWAY}
        with running_daemon({**daemon_env, "WAL_STREAMING": "on"}, tmp_path / "on.log"):
            wait_until(lambda: server.psql("SELECT active FROM pg_replication_slots") == "t", 60, "streaming")
        with running_daemon(daemon_env, tmp_path / "off.log"):
            wait_until(lambda: server.psql("SELECT count(*) FROM pg_replication_slots") == "0", 60,
                       "the slot dropped")
        dropped = [e for e in log_events((tmp_path / "off.log").read_text()) if e.get("event") == "wal_slot_dropped"]
        assert dropped and dropped[0]["slot"] == "leftover"


class TestSidecarRestart:
    def test_segments_written_while_the_sidecar_was_stopped_arrive_after_its_restart(
            self, postgres_factory, tmp_path):
        """The daemon stopped during writes and started again: the slot kept the WAL of the downtime, and the
        archive has every segment once, without a hole."""
        server = postgres_factory(databases=("appdb",))
        allow_replication(server)
        server.psql("CREATE TABLE ticks (seq int NOT NULL, at timestamptz NOT NULL)", db="appdb")
        env = exec_env(server, tmp_path, POSTGRES_PASSWORD=server.password, WAL_STREAMING="on",
                       SCHEDULE_FULL=FAR_AWAY, SCHEDULE_DATABASES=FAR_AWAY, SCHEDULE_BASE=FAR_AWAY)
        with Writer(server):
            with running_daemon(env, tmp_path / "first.log"):
                wait_until(lambda: server.psql("SELECT active FROM pg_replication_slots") == "t", 60, "streaming")
                before = switch_wal(server)
                wait_until(lambda: before in archived_names(tmp_path), 30, f"segment {before} archived")
            during = [switch_wal(server) for _ in range(3)]  # nobody streams: only the slot keeps these
            with running_daemon(env, tmp_path / "second.log"):
                last = switch_wal(server)
                wait_until(lambda: last in archived_names(tmp_path), 60, f"segment {last} archived")
        names = archived_names(tmp_path)
        assert set(during) <= set(names)
        assert len(names) == len(set(names))
        assert find_gaps(parse_segment(name) for name in names) == []


class TestRestoreCommand:
    def test_latest_recovers_every_committed_row_and_bad_targets_are_refused(
            self, docker_client, postgres_image, wal_source, streaming, docker_volume_factory):
        """`pgbackup restore point-in-time --latest` brings back every row committed before it ran (the newest
        ones only in the partial segment); a target before the oldest base or after the newest WAL is refused
        with the reason, and nothing is written."""
        backup_dir, env, _, _, _ = streaming
        assert pgbackup("backup", "base", env=env).returncode == 0
        with Writer(wal_source):
            time.sleep(2)
        committed = wal_source.psql("SELECT count(*) FROM ticks", db="appdb")
        time.sleep(1.5)

        untouched = docker_volume_factory("pgbackup-test-pitr-refused")
        for target, reason in (("2001-01-01 00:00:00", "is before the oldest base backup"),
                               ("2999-01-01 00:00:00+00:00", "is after the newest WAL received")):
            result = pgbackup("restore", "point-in-time", "--to", target, "--volume", untouched, env=env)
            assert result.returncode == 1 and reason in result.stderr, result.stderr
        assert docker_client.volumes.get(untouched).attrs["Name"] == untouched

        volume = docker_volume_factory("pgbackup-test-pitr-latest")
        result = pgbackup("restore", "point-in-time", "--latest", "--volume", volume, "--image", postgres_image,
                          env=env)
        assert result.returncode == 0, result.stderr
        assert "recovered volume" in result.stderr and result.stdout.strip() == volume
        restored = start_postgres(docker_client, postgres_image, databases=(), volume=volume,
                                  password=wal_source.password)
        try:
            assert restored.psql("SELECT count(*) FROM ticks", db="appdb") == committed
        finally:
            docker_env.remove_container(restored.container)


class TestRecoveryWindow:
    def test_the_sweep_deletes_exactly_what_the_window_no_longer_needs_and_its_start_still_restores(
            self, docker_client, postgres_image, wal_source, wal_s3, tmp_path, docker_volume_factory):
        """Three base backups A, B, C with writes in between; the sweep run as if PITR_WINDOW_DAYS=7 days
        had passed since a moment T between B and C: A and every WAL file before B's start segment are
        gone, locally and in S3; B, C, the later WAL and the spool are kept; a dry run showed the same; and
        a recovery to T from what is left brings back exactly the rows committed up to T."""
        slot = "pgbackup_window"
        s3 = {**s3_env(wal_s3), "S3_PREFIX": "window"}
        env = exec_env(wal_source, tmp_path / "backups", POSTGRES_PASSWORD=wal_source.password, WAL_STREAMING="on",
                       WAL_SLOT_NAME=slot, SCHEDULE_FULL=FAR_AWAY, SCHEDULE_DATABASES=FAR_AWAY,
                       SCHEDULE_RETENTION=FAR_AWAY, SCHEDULE_BASE=FAR_AWAY, SCHEDULE_RESTORE_TEST="off", **s3)
        backup_dir = tmp_path / "backups"
        settings = Settings(postgres_container=env["POSTGRES_CONTAINER"], postgres_user=env["POSTGRES_USER"],
                            postgres_password=env["POSTGRES_PASSWORD"], backup_dir=backup_dir, wal_streaming=True,
                            wal_slot_name=slot, **{name.lower(): value for name, value in s3.items()},
                            _env_file=None)
        client = wal_s3.client()
        try:
            with running_daemon(env, tmp_path / "daemon.log"), Writer(wal_source):
                wait_until(lambda: any((wal_dir(backup_dir) / ".spool").glob("*.partial")), 60, "streaming")
                bases = [self._base(env)]
                for _ in range(2):
                    switch_wal(wal_source)
                bases.append(self._base(env))
                time.sleep(2)
                moment = datetime.now(timezone.utc)
                time.sleep(2)
                switch_wal(wal_source)
                bases.append(self._base(env))
                last = switch_wal(wal_source)
                wait_until(lambda: last in archived_names(backup_dir), 60, f"segment {last} archived")

                a, b, c = bases
                b_start = parse_segment(b.details["start_segment"])
                names = archived_names(backup_dir)
                old = [n for n in names if parse_segment(n).number < b_start.number]
                assert len(old) >= 2 and old == sorted(old)
                now = moment + timedelta(days=7)  # the window starts at ``moment``: B covers it, A is not needed
                wait_until(lambda: all(r.offsite_key for r in read_records(backup_dir)), 60, "the WAL copied to S3")

                preview = sweep(settings, Metrics(), now, dry_run=True)
                local = {i.file for i in preview.deleted if i.location == "local"}
                assert local == {a.file, *(f"wal/{n}" for n in old)}
                offsite = {i.file for i in preview.deleted if i.location == "s3"}
                assert {a.file, *(f"wal/{n}" for n in old)} <= offsite
                assert all(parse_segment(f.removeprefix("wal/")).number < b_start.number for f in offsite - {a.file})
                assert archived_names(backup_dir) == names and self._s3_names(client, wal_s3) >= set(names)

                metrics = Metrics()
                report = locked_sweep(settings, metrics, now)
                assert report.errors == [] and report.refused == []
            spooled = {p.name for p in (wal_dir(backup_dir) / ".spool").iterdir()}
            assert not (backup_dir / a.file).exists() and not (backup_dir / f"{a.file}.manifest.json").exists()
            assert all((backup_dir / m.file).exists() for m in (b, c))
            left = {p.name for p in wal_dir(backup_dir).iterdir()}
            for name in names:  # the spool is far past B's start: nothing old was kept for it
                assert (f"{name}.gz" in left) == (name not in old) == (f"{name}.json" in left), name
            assert spooled and any(name.endswith(".partial") for name in spooled)
            assert metrics.registry.get_sample_value("pgbackup_retention_deleted_total",
                                                     {"kind": "base", "location": "local"}) == 1
            assert metrics.registry.get_sample_value("pgbackup_retention_deleted_total",
                                                     {"kind": "wal", "location": "local"}) == len(old)
            assert metrics.registry.get_sample_value("pgbackup_retention_deleted_total",
                                                     {"kind": "base", "location": "s3"}) == 1
            assert metrics.registry.get_sample_value("pgbackup_retention_deleted_total",
                                                     {"kind": "wal", "location": "s3"}) == len(offsite) - 1
            in_s3 = self._s3_names(client, wal_s3)
            assert in_s3 >= set(names) - set(old)
            assert all(parse_segment(name).number >= b_start.number for name in in_s3)
            top = {o["Key"] for o in client.list_objects_v2(Bucket=wal_s3.bucket, Prefix="window/",
                                                            Delimiter="/").get("Contents", ())}
            assert f"window/{a.file}" not in top and f"window/{a.file}.manifest.json" not in top
            assert {f"window/{b.file}", f"window/{c.file}"} <= top

            target = self._between_commits(wal_source, moment)
            expected_rows = wal_source.psql(f"SELECT count(*) FROM ticks WHERE at <= '{target.isoformat()}'",
                                            db="appdb")
            refused = pgbackup("restore", "point-in-time", "--to", (b.finished_at - timedelta(seconds=1)).isoformat(),
                               "--volume", "pgbackup-test-never-created", env=env)
            assert refused.returncode == 1 and "is before the oldest base backup" in refused.stderr, refused.stderr
            volume = docker_volume_factory("pgbackup-test-pitr-window")
            result = pgbackup("restore", "point-in-time", "--to", target.isoformat(), "--volume", volume,
                              "--image", postgres_image, env=env)
            assert result.returncode == 0, result.stderr
            restored = start_postgres(docker_client, postgres_image, databases=(), volume=volume,
                                      password=wal_source.password)
            try:
                assert restored.psql("SELECT count(*) FROM ticks", db="appdb") == expected_rows
            finally:
                docker_env.remove_container(restored.container)
        finally:
            wait_until(lambda: wal_source.psql(
                f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND NOT active") == "1",
                30, "the slot released")
            wal_source.psql(f"SELECT pg_drop_replication_slot('{slot}')")

    @staticmethod
    def _base(env: dict[str, str]):
        result = pgbackup("backup", "base", env=env)
        assert result.returncode == 0, result.stderr
        path = Path(result.stdout.strip())
        return read_manifest(path.with_name(path.name + ".manifest.json"))

    @staticmethod
    def _s3_names(client, server) -> set[str]:
        """The WAL names under window/wal/ that have both their data and their record."""
        keys = [o["Key"].removeprefix("window/wal/") for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=server.bucket, Prefix="window/wal/") for o in page.get("Contents", ())]
        data = {key.removesuffix(".gz") for key in keys if key.endswith(".gz")}
        records = {key.removesuffix(".json") for key in keys if key.endswith(".json")}
        assert data == records, data ^ records
        return {name for name in data if parse_segment(name)}

    @staticmethod
    def _between_commits(server, moment: datetime) -> datetime:
        """Half way between the last row written by ``moment`` and the next one: no commit lies near it."""
        before, after = (datetime.fromisoformat(server.psql(
            f"SELECT {agg}(at) FROM ticks WHERE seq > 0 AND at {op} '{moment.isoformat()}'", db="appdb"))
            for agg, op in (("max", "<="), ("min", ">")))
        return (before + (after - before) / 2).astimezone(timezone.utc)


@contextmanager
def running_daemon(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """`pgbackup run` until the block ends (SIGTERM, waited for); its log in ``log_path``."""
    env = {"METRICS_PORT": str(docker_env.free_port()), **env}
    with log_path.open("w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "daemon", "run"], env=env, cwd=REPO_ROOT,
                                   stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
