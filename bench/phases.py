"""The restore comparison and the idle daemon measurement."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import docker
import psutil

from bench import dataset as bench_dataset
from bench.contenders import (
    BenchContext,
    manifest_field,
    pgbackup_help,
    settings_fields,
)
from bench.measure import Contender, Sample, Unavailable, run_process, tail
from tests.support import docker_env
from tests.support.pgbackup_cli import REPO_ROOT, exec_env
from tests.support.postgres import PgServer, start_postgres


def _restore_target(client: docker.DockerClient, image: str) -> PgServer:
    """An empty server with the image's default settings, as a real restore would meet."""
    return start_postgres(client, image, databases=(), name=docker_env.unique_name("pgbackup-bench-restore"),
                          publish=False)


def _check_counts(server: PgServer, expected: dict[str, int]) -> None:
    counts = bench_dataset.table_counts(server, expected)
    if counts != expected:
        raise RuntimeError(f"restored row counts differ: {counts} != {expected}")


def _kept_dumps(context: BenchContext) -> list[Path]:
    backup_dir = context.keep_for_restore.get("databases")
    if backup_dir is None:
        raise Unavailable("no per-database backups (pgbackup backup databases, default) to restore")
    dumps = sorted(p for p in backup_dir.iterdir() if p.name.endswith(".dump"))
    if not dumps:
        raise Unavailable(f"the per-database backups are not custom-format .dump files: "
                          f"{sorted(p.name for p in backup_dir.iterdir())}")
    return dumps


def restore_contenders(context: BenchContext, client: docker.DockerClient, image: str,
                       expected_rows: dict[str, int]) -> list[Contender]:
    """The team's plain restore of the full backup versus restoring the per-database dumps.

    Each run restores into a new, empty server (started before the clock starts) and
    checks the restored row counts against the dataset.
    """
    jobs = int(settings_fields()["restore_jobs"].default)
    path_env = {"PATH": "/usr/bin:/bin:/usr/local/bin"}

    def plain() -> Sample:
        backup = context.keep_for_restore.get("current")
        if backup is None:
            raise Unavailable("no full backup from the current pipeline to restore")
        target = _restore_target(client, image)
        try:
            run = run_process(
                ["bash", "-o", "pipefail", "-c", f'gunzip -c "$1" | docker exec -i {target.name} psql -U postgres',
                 "restore", str(backup)],
                env=path_env, scratch=context.scratch("restore-plain"),
            )
            if run.returncode != 0:
                raise RuntimeError(f"exit {run.returncode}: {tail(run.stderr)}")
            _check_counts(target, expected_rows)
            return Sample(run.seconds, details={"psql_errors": run.stderr.count("ERROR:")},
                          machine_cpu_seconds=run.machine_cpu_seconds)
        finally:
            docker_env.remove_container(target.container)

    def direct() -> Sample:
        dumps = _kept_dumps(context)
        target = _restore_target(client, image)
        try:
            steps = []
            for dump in dumps:
                create = "" if manifest_field(dump, "target") == "postgres" else "--create"
                inside = f"/tmp/{dump.name}"
                steps += [
                    f"docker cp {_q(str(dump))} {target.name}:{inside}",
                    (f"docker exec {target.name} pg_restore -U postgres --exit-on-error -j {jobs} {create} "
                    f"-d postgres {inside}"),
                    f"docker exec {target.name} rm -f {inside}",
                ]
            run = run_process(["bash", "-e", "-o", "pipefail", "-c", "\n".join(steps)], env=path_env,
                              scratch=context.scratch("restore-direct"))
            if run.returncode != 0:
                raise RuntimeError(f"exit {run.returncode}: {tail(run.stderr)}")
            _check_counts(target, expected_rows)
            return Sample(run.seconds, details={"dumps": len(dumps)}, machine_cpu_seconds=run.machine_cpu_seconds)
        finally:
            docker_env.remove_container(target.container)

    def with_pgbackup() -> Sample:
        if " restore " not in pgbackup_help():
            raise Unavailable("pgbackup has no restore command (yet)")
        dumps = [d for d in _kept_dumps(context) if manifest_field(d, "target") != "postgres"]
        target = _restore_target(client, image)
        try:
            total, peak, tree, cpu = 0.0, 0, 0, 0.0
            for dump in dumps:
                database = manifest_field(dump, "target")
                env = exec_env(target, dump.parent, POSTGRES_PASSWORD=target.password or "", LOG_LEVEL="WARNING")
                run = run_process(
                    [sys.executable, "-m", "daemon", "restore", "database", database, "--from", str(dump), "--yes"],
                    env=env, cwd=REPO_ROOT, scratch=context.scratch(f"restore-pgbackup-{database}"),
                )
                if run.returncode != 0:
                    raise RuntimeError(f"pgbackup restore database {database} --from FILE --yes: exit "
                                       f"{run.returncode}: {tail(run.stderr)}")
                total += run.seconds
                cpu += run.machine_cpu_seconds or 0.0
                peak, tree = max(peak, run.peak_rss_bytes), max(tree, run.tree_rss_bytes)
            _check_counts(target, expected_rows)
            return Sample(total, peak_rss_bytes=peak, tree_rss_bytes=tree, details={"dumps": len(dumps)},
                          machine_cpu_seconds=cpu)
        finally:
            docker_env.remove_container(target.container)

    def full_with_pgbackup() -> Sample:
        backup_dir = context.keep_for_restore.get("full")
        fulls = sorted(backup_dir.glob("*.sql.gz")) if backup_dir is not None else []
        if not fulls:
            raise Unavailable("no full backup (pgbackup backup full, default) to restore")
        target = _restore_target(client, image)
        try:
            env = exec_env(target, backup_dir, POSTGRES_PASSWORD=target.password or "", LOG_LEVEL="WARNING")
            run = run_process([sys.executable, "-m", "daemon", "restore", "full", "--from", str(fulls[-1]), "--yes"],
                              env=env, cwd=REPO_ROOT, scratch=context.scratch("restore-pgbackup-full"))
            if run.returncode != 0:
                raise RuntimeError(f"pgbackup restore full --from FILE --yes: exit {run.returncode}: {tail(run.stderr)}")
            _check_counts(target, expected_rows)
            return Sample(run.seconds, peak_rss_bytes=run.peak_rss_bytes, tree_rss_bytes=run.tree_rss_bytes,
                          machine_cpu_seconds=run.machine_cpu_seconds)
        finally:
            docker_env.remove_container(target.container)

    return [
        Contender("restore/plain", "current restore: gunzip -c full | docker exec -i psql", "restore", plain),
        Contender("restore/full", f"pgbackup restore full --from FULL --yes (RESTORE_JOBS={jobs})", "restore",
                  full_with_pgbackup),
        Contender("restore/pgbackup", f"pgbackup restore database NAME --from DUMP --yes, each database "
                  f"(RESTORE_JOBS={jobs})", "restore", with_pgbackup),
        Contender("restore/direct", f"pg_restore -j {jobs} --create of each dump inside the container "
                  "(without pgbackup; one round)", "restore", direct, rounds=1),
    ]


@dataclass
class IdleResult:
    seconds: float = 0.0
    cpu_seconds: float | None = None
    peak_rss_bytes: int | None = None
    unavailable: str | None = None

    @property
    def cpu_percent(self) -> float | None:
        if self.cpu_seconds is None or not self.seconds:
            return None
        return 100 * self.cpu_seconds / self.seconds

    def to_json(self) -> dict:
        return {"seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "cpu_percent": self.cpu_percent,
                "peak_rss_bytes": self.peak_rss_bytes, "unavailable": self.unavailable}


def far_away_schedule(now: datetime) -> str:
    """A crontab that does not fire for months."""
    month = (now.month + 5) % 12 + 1
    return f"17 3 2 {month} *"


def measure_idle(context: BenchContext, seconds: float, settle_seconds: float = 3.0) -> IdleResult:
    """Run `pgbackup run` with every schedule months away and sample its CPU time and RSS."""
    schedule = far_away_schedule(datetime.now())
    schedules = {name.upper(): schedule for name in settings_fields() if name.startswith("schedule_")}
    scratch = context.scratch("idle")
    backup_dir = scratch / "backups"
    backup_dir.mkdir()
    env = exec_env(context.server, backup_dir, POSTGRES_PASSWORD=context.server.password or "",
                   METRICS_PORT=str(docker_env.free_port()), **schedules)
    result = IdleResult()
    with (scratch / "stdout.txt").open("wb") as out, (scratch / "stderr.txt").open("wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "daemon", "run"], env=env, cwd=REPO_ROOT,
                                   stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(settle_seconds)
        if process.poll() is not None:
            result.unavailable = (f"pgbackup run exited with {process.returncode}: "
                                  f"{tail((scratch / 'stdout.txt').read_text() + (scratch / 'stderr.txt').read_text())}")
            return result
        watched = psutil.Process(process.pid)

        def cpu() -> float:
            total = 0.0
            for item in (watched, *watched.children(recursive=True)):
                times = item.cpu_times()
                total += times.user + times.system
            return total

        before, started = cpu(), time.monotonic()
        peak = 0
        while time.monotonic() - started < seconds:
            peak = max(peak, watched.memory_info().rss)
            time.sleep(0.5)
        result.cpu_seconds = cpu() - before
        result.seconds = time.monotonic() - started
        result.peak_rss_bytes = max(peak, watched.memory_info().rss)
        return result
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
