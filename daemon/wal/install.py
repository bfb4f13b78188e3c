"""WAL streaming in the daemon: with WAL_STREAMING=on, the prerequisite check at start, the
watch on synchronous_standby_names (WAL_SYNCHRONOUS), the supervised receiver, the monitor of
lag and slot retention (``monitor``) and the base backup schedule (SCHEDULE_BASE); with it off,
the slot of an earlier install dropped (a slot nobody reads keeps WAL on the server until its
disk is full) and a server that still waits for the receiver on every commit reported."""

from __future__ import annotations

import threading
from collections.abc import Callable

import docker

from daemon.backup.runner import BackupRunner
from daemon.errors import Cancelled, PgBackupError
from daemon.logs import get_logger
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.scheduler import HealthWatch, ScheduledJob
from daemon.settings import Settings
from daemon.sources.connect import connect
from daemon.wal.archive import wal_dir
from daemon.wal.base import KIND, TARGET, run_base_backup
from daemon.wal.monitor import start_monitor
from daemon.wal.offsite import start_uploader
from daemon.wal.prerequisites import PREREQUISITES_PROBLEM, assess, missing_text
from daemon.wal.receiver import WalReceiver
from daemon.wal.server import drop_slot, resolve_endpoint, server_facts
from daemon.wal.sync_watch import SynchronousWatch

log = get_logger(__name__)

STOP_TIMEOUT_SECONDS = 25  # pg_receivewal gets SIGINT, then SIGKILL after 10 s; a last archive pass


def install(settings: Settings, runner: BackupRunner, metrics: Metrics) -> list[ScheduledJob]:
    """The base backup job; the receiver and the checks run in the background from ``start``."""
    if not settings.wal_streaming:
        return []
    trigger = settings.trigger(settings.schedule_base)
    if trigger is not None:
        metrics.declare(KIND, TARGET)  # at 0, so that increase() sees a first failure
    return [ScheduledJob("base", trigger, _job(runner, settings), HealthWatch(KIND))]


def start(settings: Settings, metrics: Metrics, health: HealthState, cancel: threading.Event,
          client: docker.DockerClient | None = None) -> threading.Thread:
    """In the background, so that a database that does not answer never delays the daemon's start:
    with WAL_STREAMING=on check the prerequisites, watch synchronous_standby_names and supervise the
    receiver; with it off, if an earlier configuration streamed (BACKUP_DIR/wal/ exists), drop the
    slot and report a server that still waits for the receiver on every commit. An install that never
    streamed does not even ask: its daemon starts as it always did, and a slot of that name that
    someone else made is not ours to drop."""
    if settings.wal_streaming:
        def stream() -> None:
            check_prerequisites(settings, health, client)
            SynchronousWatch(settings, health, cancel, client).start()
            start_uploader(settings, metrics, cancel)
            start_monitor(settings, metrics, health, cancel, client)
            WalReceiver(settings, metrics, health, cancel, client).supervise()
        target = stream
    else:
        def target() -> None:
            if wal_dir(settings.backup_dir).is_dir():
                drop_unused_slot(settings, client)
                # Commits that still wait for the receiver hang now: said until someone undoes it.
                SynchronousWatch(settings, health, cancel, client).run(until_clear=True)
    thread = threading.Thread(target=target, name="wal", daemon=True)
    thread.start()
    return thread


def check_prerequisites(settings: Settings, health: HealthState, client: docker.DockerClient | None = None) -> None:
    """Name exactly what the server lacks for streaming (logged, and on /healthz while it lacks it)."""
    try:
        endpoint = resolve_endpoint(settings, client)
        findings = assess(server_facts(endpoint, settings.wal_slot_name), settings.wal_slot_name,
                          settings.replication_login[0])
    except PgBackupError as error:
        log.warning("wal_prerequisites_not_checked", error=str(error))
        return
    for finding in findings:
        (log.error if finding.blocking else log.warning)(
            "wal_prerequisite_missing" if finding.blocking else "wal_setup_advice",
            problem=finding.problem, change=finding.change)
    health.set_problem(PREREQUISITES_PROBLEM, missing_text(findings))


def drop_unused_slot(settings: Settings, client: docker.DockerClient | None = None) -> None:
    """WAL_STREAMING is off: a slot of ours that still exists would keep the server's WAL forever.
    (Any connection method will do: this is SQL, not replication.)"""
    try:
        if drop_slot(connect(settings, client).server, settings.wal_slot_name):
            log.warning("wal_slot_dropped", slot=settings.wal_slot_name,
                        reason="WAL_STREAMING is off; a slot nobody reads would fill the server's disk")
    except PgBackupError as error:
        log.info("wal_slot_not_checked", slot=settings.wal_slot_name, error=str(error))


def _job(runner: BackupRunner, settings: Settings) -> Callable[[], None]:
    def backup_base() -> None:
        if runner.cancel.is_set():
            return
        try:
            run_base_backup(runner, settings)
        except Cancelled as error:
            log.warning("run_cancelled", kind=KIND, reason=str(error))

    return backup_base
