"""Point-in-time recovery in the benchmark (issue 18), on a server with the image's own WAL
settings (wal_level=replica) holding the mixed dataset:

- a base backup: `pgbackup backup base` against `pg_basebackup -Ft -X fetch > /dev/null`;
- what streaming costs a write workload: pgbench (one-row INSERT transactions, two clients,
  inside the database container) without the daemon, with WAL_STREAMING=on, and with
  WAL_SYNCHRONOUS=on where the daemon has that setting;
- RTO: `restore point-in-time --latest` of the newest base backup plus the WAL of steady writes
  (pgbench at a fixed rate for --pitr-write-seconds) into a new volume, its rows counted;
- RPO: a writer commits a row every 50 ms over TCP, the server is killed (`docker kill`) while it
  writes, and `restore point-in-time --latest` shows how many of the commits the writer saw
  succeed are missing, and how many seconds of them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import docker

from bench import dataset as bench_dataset
from bench.contenders import HOST_CLIENT_BIN, settings_fields
from bench.measure import run_process, tail
from tests.support import docker_env
from tests.support.pgbackup_cli import REPO_ROOT, exec_env
from tests.support.postgres import PgServer, start_postgres

FAR_AWAY = "17 3 2 1 *"
HBA_REPLICATION = "host replication all all scram-sha-256"
WORK_DATABASE = "apidb"
TICKS = "bench_ticks"
INSERT_SCRIPT = f"INSERT INTO {TICKS} (at, pad) VALUES (clock_timestamp(), repeat('x', 100));"
PGBENCH_CLIENTS = 2
STEADY_RATE = 200  # transactions per second of the writes the RTO is measured after
_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")


@dataclass
class PitrResult:
    size_label: str = ""
    base_seconds: float | None = None
    base_bytes: int | None = None
    basebackup_null_seconds: float | None = None
    tps: dict[str, float] = field(default_factory=dict)  # variant -> transactions per second
    write_seconds: float = 0.0
    rto_seconds: float | None = None
    rto_rows: int | None = None
    rpo_commits_seen: int | None = None
    rpo_commits_lost: int | None = None
    rpo_seconds_lost: float | None = None
    notes: dict[str, str] = field(default_factory=dict)  # what could not be measured, and why

    def to_json(self) -> dict:
        return asdict(self)


def measure_pitr(result: PitrResult, client: docker.DockerClient, image: str, size_mb: float, work_dir: Path, *,
                 seed: int, write_seconds: float, tps_seconds: float, log) -> None:
    """Fills ``result`` as it goes: a step that fails leaves the figures of the steps before."""
    server = start_postgres(client, image, databases=bench_dataset.DATABASES, shm_size="512m",
                            name=docker_env.unique_name("pgbackup-bench-pitr"))
    try:
        _allow_replication(server)
        log(f"point-in-time recovery: dataset of {size_mb:g} MB (wal_level=replica)")
        bench_dataset.fill(server, size_mb, seed=seed)
        server.psql(f"CREATE TABLE {TICKS} (seq bigserial PRIMARY KEY, at timestamptz NOT NULL, pad text)",
                    db=WORK_DATABASE)
        _write_pgbench_script(server)
        backup_dir = work_dir / "backups"
        backup_dir.mkdir(parents=True)
        env = _env(server, backup_dir)

        log("point-in-time recovery: write throughput without streaming")
        result.tps["without streaming"] = _pgbench(server, tps_seconds)
        with _daemon(env, work_dir / "daemon.log", backup_dir):
            log("point-in-time recovery: write throughput with WAL_STREAMING=on")
            result.tps["WAL_STREAMING=on"] = _pgbench(server, tps_seconds)
            log("point-in-time recovery: base backups")
            _measure_base(server, env, result)
            log(f"point-in-time recovery: {write_seconds:g} s of steady writes, then restore --latest (RTO)")
            _measure_rto(client, image, server, env, write_seconds, result)
        _measure_synchronous(server, env, work_dir, backup_dir, tps_seconds, result, log)
        with _daemon(env, work_dir / "daemon-rpo.log", backup_dir):
            log("point-in-time recovery: the server killed while a writer commits (RPO)")
            _measure_rpo(client, image, server, env, result)
    finally:
        docker_env.remove_container(server.container)


def _allow_replication(server: PgServer) -> None:
    code, output = server.container.exec_run(["sh", "-c", f'echo "{HBA_REPLICATION}" >> "$PGDATA/pg_hba.conf"'])
    if code != 0:
        raise RuntimeError(f"cannot allow replication: {output.decode(errors='replace')}")
    server.psql("SELECT pg_reload_conf()")


def _write_pgbench_script(server: PgServer) -> None:
    code, output = server.container.exec_run(["sh", "-c", f'printf "%s\\n" "{INSERT_SCRIPT}" > /tmp/bench-insert.sql'])
    if code != 0:
        raise RuntimeError(f"cannot write the pgbench script: {output.decode(errors='replace')}")


def _env(server: PgServer, backup_dir: Path, **settings: str) -> dict[str, str]:
    schedules = {name.upper(): FAR_AWAY for name in settings_fields() if name.startswith("schedule_")}
    schedules["SCHEDULE_RESTORE_TEST"] = "off"
    return exec_env(server, backup_dir, POSTGRES_PASSWORD=server.password or "", WAL_STREAMING="on",
                    LOG_LEVEL="WARNING", METRICS_PORT=str(docker_env.free_port()), **schedules, **settings)


def _pgbench(server: PgServer, seconds: float, rate: int | None = None) -> float:
    argv = ["pgbench", "-n", "-U", server.user, "-c", str(PGBENCH_CLIENTS), "-j", str(PGBENCH_CLIENTS),
            "-T", str(max(1, round(seconds))), "-f", "/tmp/bench-insert.sql", WORK_DATABASE]
    if rate is not None:
        argv[1:1] = ["-R", str(rate)]
    code, output = server.container.exec_run(argv, user="postgres")
    text = output.decode(errors="replace")
    match = _TPS.search(text)
    if code != 0 or match is None:
        raise RuntimeError(f"pgbench failed (exit {code}): {tail(text)}")
    return float(match.group(1))


@contextmanager
def _daemon(env: dict[str, str], log_path: Path, backup_dir: Path) -> Iterator[subprocess.Popen]:
    """`pgbackup run` with WAL_STREAMING=on until the block ends; waits until the receiver streams."""
    with log_path.open("w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "daemon", "run"], env=env, cwd=REPO_ROOT,
                                   stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        spool = backup_dir / "wal" / ".spool"
        while not any(spool.glob("*.partial")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon's WAL receiver did not start: {tail(log_path.read_text())}")
            time.sleep(0.5)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _measure_base(server: PgServer, env: dict[str, str], result: PitrResult) -> None:
    scratch = Path(env["BACKUP_DIR"]).parent / "scratch-base"
    null = run_process(
        ["bash", "-o", "pipefail", "-c",
         f'"{HOST_CLIENT_BIN}/pg_basebackup" -h 127.0.0.1 -p "$1" -U "$2" -D - -Ft -X fetch --checkpoint=fast '
         "> /dev/null", "basebackup", str(server.port), server.user],
        env={"PATH": "/usr/bin:/bin", "PGPASSWORD": server.password or ""}, scratch=scratch)
    if null.returncode != 0:
        raise RuntimeError(f"pg_basebackup > /dev/null failed: {tail(null.stderr)}")
    result.basebackup_null_seconds = null.seconds
    base = run_process([sys.executable, "-m", "daemon", "backup", "base"], env=env, cwd=REPO_ROOT, scratch=scratch)
    if base.returncode != 0:
        raise RuntimeError(f"pgbackup backup base failed: {tail(base.stderr)}")
    result.base_seconds = base.seconds
    result.base_bytes = Path(base.stdout.strip().splitlines()[-1]).stat().st_size


def _measure_rto(client: docker.DockerClient, image: str, server: PgServer, env: dict[str, str],
                 write_seconds: float, result: PitrResult) -> None:
    started = time.monotonic()
    _pgbench(server, write_seconds, rate=STEADY_RATE)
    result.write_seconds = time.monotonic() - started
    expected = int(server.psql(f"SELECT count(*) FROM {TICKS}", db=WORK_DATABASE))
    time.sleep(2)  # the receiver flushes as it receives; one more archive pass
    seconds, restored = _restore_latest(client, image, env, count_sql=f"SELECT count(*) FROM {TICKS}")
    if int(restored) != expected:
        raise RuntimeError(f"the recovered server has {restored} rows of {TICKS}, the source {expected}")
    result.rto_seconds, result.rto_rows = seconds, expected


def _measure_synchronous(server: PgServer, env: dict[str, str], work_dir: Path, backup_dir: Path,
                         tps_seconds: float, result: PitrResult, log) -> None:
    if "wal_synchronous" not in settings_fields():
        result.notes["WAL_SYNCHRONOUS=on"] = "the daemon has no WAL_SYNCHRONOUS setting (yet)"
        return
    sync_env = {**env, "WAL_SYNCHRONOUS": "on"}
    setup = subprocess.run([sys.executable, "-m", "daemon", "wal", "setup", "--apply"], env=sync_env, cwd=REPO_ROOT,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if not server.psql("SHOW synchronous_standby_names"):
        result.notes["WAL_SYNCHRONOUS=on"] = (f"`wal setup --apply` did not set synchronous_standby_names: "
                                              f"{tail(setup.stdout + setup.stderr)}")
        return
    try:
        with _daemon(sync_env, work_dir / "daemon-sync.log", backup_dir):
            log("point-in-time recovery: write throughput with WAL_SYNCHRONOUS=on")
            result.tps["WAL_SYNCHRONOUS=on"] = _pgbench(server, tps_seconds)
    finally:
        server.psql("ALTER SYSTEM RESET synchronous_standby_names")
        server.psql("SELECT pg_reload_conf()")


def _measure_rpo(client: docker.DockerClient, image: str, server: PgServer, env: dict[str, str],
                 result: PitrResult) -> None:
    server.psql("CREATE TABLE bench_rpo (seq bigserial PRIMARY KEY, at timestamptz NOT NULL)", db=WORK_DATABASE)
    writer = _Writer(server)
    writer.start()
    time.sleep(10)
    server.container.kill()
    writer.join(30)
    if not writer.committed:
        raise RuntimeError(f"the writer committed nothing: {writer.error}")
    time.sleep(2)
    _, restored_max = _restore_latest(client, image, env, count_sql="SELECT coalesce(max(seq), 0) FROM bench_rpo")
    newest_restored = int(restored_max)
    lost = [(seq, at) for seq, at in writer.committed if seq > newest_restored]
    result.rpo_commits_seen = len(writer.committed)
    result.rpo_commits_lost = len(lost)
    kept_at = next((at for seq, at in reversed(writer.committed) if seq <= newest_restored), None)
    result.rpo_seconds_lost = ((writer.committed[-1][1] - kept_at).total_seconds() if lost and kept_at
                               else 0.0 if not lost else None)


class _Writer(threading.Thread):
    """Commits a row every 50 ms over TCP (psql on the host, autocommit), recording each commit the
    server confirmed; ends at the first failure (the server was killed)."""

    def __init__(self, server: PgServer):
        super().__init__(daemon=True)
        self.server = server
        self.committed: list[tuple[int, datetime]] = []
        self.error = ""

    def run(self) -> None:
        env = {"PATH": "/usr/bin:/bin", "PGPASSWORD": self.server.password or "", "PGCONNECT_TIMEOUT": "5"}
        argv = [f"{HOST_CLIENT_BIN}/psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.server.port), "-U",
                self.server.user, "-d", WORK_DATABASE, "-At", "-c",
                "INSERT INTO bench_rpo (at) VALUES (clock_timestamp()) RETURNING seq, at"]
        while True:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                self.error = done.stderr.strip()
                return
            try:
                seq, at = done.stdout.strip().splitlines()[0].split("|")
                self.committed.append((int(seq), datetime.fromisoformat(at)))
            except (IndexError, ValueError):
                self.error = f"unexpected psql output: {done.stdout!r}"
                return
            time.sleep(0.05)


def _restore_latest(client: docker.DockerClient, image: str, env: dict[str, str], count_sql: str) -> tuple[float, str]:
    """`restore point-in-time --latest` into a new volume, timed; then ``count_sql`` on a server
    started on it. The volume and the server are removed afterwards."""
    volume = docker_env.unique_name("pgbackup-bench-pitr-vol")
    client.volumes.create(volume, labels=docker_env.docker_labels())
    try:
        scratch = Path(env["BACKUP_DIR"]).parent / f"scratch-{volume}"
        run = run_process([sys.executable, "-m", "daemon", "restore", "point-in-time", "--latest", "--volume", volume,
                           "--image", image], env=env, cwd=REPO_ROOT, scratch=scratch)
        if run.returncode != 0:
            raise RuntimeError(f"restore point-in-time --latest failed: {tail(run.stderr)}")
        restored = start_postgres(client, image, databases=(), volume=volume, publish=False,
                                  name=docker_env.unique_name("pgbackup-bench-pitr-check"))
        try:
            return run.seconds, restored.psql(count_sql, db=WORK_DATABASE)
        finally:
            docker_env.remove_container(restored.container)
    finally:
        try:
            client.volumes.get(volume).remove(force=True)
        except docker.errors.DockerException:
            pass


def rows(result: PitrResult) -> list[list[str]]:
    """The report's table: what was measured, the figure, and how."""
    def seconds(value: float | None) -> str:
        return f"{value:.2f} s" if value is not None else "n/a"

    out = [
        ["base backup: pg_basebackup -Ft -X fetch > /dev/null", seconds(result.basebackup_null_seconds), "reference"],
        ["base backup: pgbackup backup base", seconds(result.base_seconds),
         f"{result.base_bytes / 1e6:.1f} MB" if result.base_bytes else ""],
    ]
    if result.base_seconds and result.basebackup_null_seconds:
        out.append(["base backup vs pg_basebackup > /dev/null", f"{result.base_seconds / result.basebackup_null_seconds:.2f} ×",
                    ""])
    baseline = result.tps.get("without streaming")
    for variant, tps in result.tps.items():
        ratio = f"{tps / baseline:.2f} × of without" if baseline else ""
        out.append([f"write throughput, {variant}", f"{tps:.0f} tx/s", ratio])
    for variant, why in result.notes.items():
        out.append([f"write throughput, {variant}", "n/a", why])
    out.append([f"RTO: restore point-in-time --latest after {result.write_seconds:.0f} s of writes at "
                f"{STEADY_RATE} tx/s", seconds(result.rto_seconds),
                f"{result.rto_rows} rows checked" if result.rto_rows is not None else ""])
    if result.rpo_commits_seen is not None:
        out.append(["RPO: commits lost after docker kill (WAL_STREAMING=on)",
                    f"{result.rpo_commits_lost} of {result.rpo_commits_seen}",
                    seconds(result.rpo_seconds_lost) + " of commits" if result.rpo_seconds_lost is not None else ""])
    return out


PITR_HEADER = ["measured", "figure", "note"]
