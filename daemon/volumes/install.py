"""The volume job in the daemon: its schedule, its /healthz allowance, and the start-up
check that starts containers a snapshot left stopped when the daemon died mid-way."""

from __future__ import annotations

from datetime import datetime, timedelta

from daemon.errors import Cancelled, LockBusy, PgBackupError
from daemon.lock import backup_lock
from daemon.logs import get_logger
from daemon.manifest import scan_manifests
from daemon.metrics import Metrics
from daemon.runner import BackupRunner
from daemon.schedule import allowed_age
from daemon.scheduler import ScheduledJob
from daemon.settings import Settings
from daemon.sources.connect import docker_client
from daemon.storage.local import ensure_backup_dir
from daemon.volumes.containers import read_record, restart_recorded
from daemon.volumes.snapshot import KIND, check_volume_settings, run_volume_snapshot

log = get_logger(__name__)


def install(settings: Settings, runner: BackupRunner, metrics: Metrics) -> list[ScheduledJob]:
    if not settings.volume_name:
        return []
    check_volume_settings(settings)  # VOLUME_SNAPSHOT_MODE=running stops start-up with a clear line
    ensure_backup_dir(settings.backup_dir)
    restart_left_stopped(settings, runner)
    newest = None
    for manifest in scan_manifests(settings.backup_dir).manifests:
        if manifest.kind == KIND and manifest.target == settings.volume_name:
            newest = manifest
            break
    if newest is not None and isinstance(newest.details.get("downtime_seconds"), (int, float)):
        metrics.volume_downtime.labels(settings.volume_name).set(newest.details["downtime_seconds"])
    trigger = settings.trigger(settings.schedule_volume)
    if trigger is not None:
        now = datetime.now(settings.timezone)
        age = allowed_age(trigger, now, timedelta(hours=settings.backup_max_age_hours))
        # Scheduled here rather than through ScheduledJob.health_kind: the volume kind
        # gets its own allowance (see allowed_age) instead of BACKUP_MAX_AGE_HOURS.
        runner.health.schedule(KIND, trigger, newest.started_at if newest else None, max_age=age)
        metrics.declare(KIND, settings.volume_name)  # at 0, so that increase() sees a first failure
    return [ScheduledJob("volume", settings.schedule_volume, _job(runner), None)]


def restart_left_stopped(settings: Settings, runner: BackupRunner) -> None:
    """On start-up: start the containers an interrupted snapshot stopped. A snapshot that
    still runs (another process holds the lock) starts its own containers itself."""
    try:
        if read_record(settings.backup_dir) is None:
            return
        holder = {"kind": KIND, "purpose": "restart containers left stopped"}
        with backup_lock(settings.backup_dir, holder, wait=False):
            client = runner.docker_client or docker_client(settings)
            problems = restart_recorded(client, settings.backup_dir, settings.volume_stop_timeout_seconds)
        for problem in problems:
            log.error("container_left_stopped", error=problem)
    except LockBusy:
        log.info("left_stopped_containers_owned_by_running_snapshot")
    except PgBackupError as error:
        log.error("container_left_stopped", error=str(error))


def _job(runner: BackupRunner):
    def backup_volume() -> None:
        if runner.cancel.is_set():
            return
        try:
            run_volume_snapshot(runner)
        except Cancelled as error:
            log.warning("run_cancelled", kind=KIND, reason=str(error))

    return backup_volume
