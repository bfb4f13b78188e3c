"""The volume job in the daemon: its schedule and /healthz allowance, its downtime gauge from
the manifests, and the supervisor that starts containers a snapshot left stopped (the daemon
died mid-way, or their start failed): at start-up, then as a job every few seconds."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import docker
from apscheduler.triggers.interval import IntervalTrigger

from daemon.backup.extensions import RunExtensions
from daemon.backup.runner import BackupRunner
from daemon.errors import Cancelled
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.monitoring.metrics import Metrics
from daemon.notify import Notifier
from daemon.schedule import allowed_age
from daemon.scheduler import HealthWatch, ScheduledJob
from daemon.settings import Settings
from daemon.storage.local import ensure_backup_dir
from daemon.volumes.snapshot import KIND, check_volume_settings, run_volume_snapshot
from daemon.volumes.supervisor import TICK_SECONDS, RestartSupervisor

log = get_logger(__name__)


def install(settings: Settings, runner: BackupRunner, extensions: RunExtensions, metrics: Metrics,
            client: docker.DockerClient | None = None, notifier: Notifier | None = None) -> list[ScheduledJob]:
    if not settings.volume_name:
        return []
    check_volume_settings(settings)  # VOLUME_SNAPSHOT_MODE=running stops start-up with a clear line
    ensure_backup_dir(settings.backup_dir)
    supervisor = RestartSupervisor(settings, metrics, runner.health, notifier, client, runner.cancel)
    supervisor.check()  # containers an interrupted snapshot left stopped, before anything else
    extensions.listen_to_manifests(_downtime_gauge(settings.volume_name, metrics))
    trigger = settings.trigger(settings.schedule_volume)
    health = None
    if trigger is not None:
        # The volume kind gets its own allowance (see allowed_age), not BACKUP_MAX_AGE_HOURS.
        age = allowed_age(trigger, datetime.now(settings.timezone), timedelta(hours=settings.backup_max_age_hours))
        health = HealthWatch(KIND, max_age=age)
        metrics.declare(KIND, settings.volume_name)  # at 0, so that increase() sees a first failure
    return [ScheduledJob("volume", trigger, _job(runner, settings, client, runner.cancel), health),
            ScheduledJob("volume_restart", IntervalTrigger(seconds=TICK_SECONDS), supervisor.check, quiet=True)]


def _downtime_gauge(volume: str, metrics: Metrics) -> Callable[[list[Manifest]], None]:
    """pgbackup_volume_downtime_seconds of the newest snapshot on disk (a manifest listener)."""
    def volume_downtime(manifests: list[Manifest]) -> None:
        newest = next((m for m in manifests if m.kind == KIND and m.target == volume), None)  # newest first
        if newest is not None and isinstance(newest.details.get("downtime_seconds"), (int, float)):
            metrics.volume_downtime.labels(volume).set(newest.details["downtime_seconds"])

    return volume_downtime


def _job(runner: BackupRunner, settings: Settings, client: docker.DockerClient | None,
         cancel: threading.Event) -> Callable[[], None]:
    def backup_volume() -> None:
        if cancel.is_set():
            return
        try:
            run_volume_snapshot(runner, settings, client)
        except Cancelled as error:
            log.warning("run_cancelled", kind=KIND, reason=str(error))

    return backup_volume
