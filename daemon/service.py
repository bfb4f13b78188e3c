"""The long-running daemon: metrics restored from disk, the HTTP endpoints, the schedule,
and a shutdown that stops a running backup cleanly when the container is stopped."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from daemon.errors import Cancelled
from daemon.health import HealthState
from daemon.httpserver import start_http_server
from daemon.logs import get_logger
from daemon.manifest import Manifest, scan_manifests
from daemon.metrics import Metrics
from daemon.offsite import install as install_housekeeping
from daemon.runner import METRIC_KIND, BackupRunner
from daemon.volumes.install import install as install_volume_snapshots
from daemon.restore_test import install as install_restore_test
from daemon.scheduler import ScheduledJob, build_scheduler, log_next_runs
from daemon.settings import Settings
from daemon.storage.local import ensure_backup_dir

log = get_logger(__name__)

# Features hook into the daemon here: each installer may add after-run hooks, sinks or
# observers to the runner and returns the scheduled jobs it needs.
FeatureInstaller = Callable[[Settings, BackupRunner, Metrics], list[ScheduledJob]]
FEATURE_INSTALLERS: list[FeatureInstaller] = []
FEATURE_INSTALLERS.append(install_housekeeping)  # run logs, offsite copies, retention, notifications
FEATURE_INSTALLERS.append(install_volume_snapshots)  # the weekly volume snapshot (VOLUME_NAME)
FEATURE_INSTALLERS.append(install_restore_test)  # the monthly restore test (SCHEDULE_RESTORE_TEST)


def install_features(settings: Settings, runner: BackupRunner, metrics: Metrics) -> list[ScheduledJob]:
    """Equip a runner with every feature's hooks (for the daemon and for backups taken by hand)."""
    jobs: list[ScheduledJob] = []
    for install in FEATURE_INSTALLERS:
        jobs += install(settings, runner, metrics)
    return jobs


def backup_jobs(settings: Settings, runner: BackupRunner) -> list[ScheduledJob]:
    """One job per scheduled request; its job id is the request (full, databases, tables)."""
    schedules = {"full": settings.schedule_full, "databases": settings.schedule_databases}
    if settings.backup_tables:
        schedules["tables"] = settings.schedule_tables
    return [
        ScheduledJob(request, expression, _job(runner, request), METRIC_KIND[request])
        for request, expression in schedules.items()
    ]


def _job(runner: BackupRunner, request: str):
    def run_scheduled() -> None:
        if runner.cancel.is_set():
            return
        try:
            runner.run(request)
        except Cancelled as error:
            log.warning("run_cancelled", kind=METRIC_KIND[request], reason=str(error))

    run_scheduled.__name__ = f"backup_{request}"
    return run_scheduled


def newest_success_by_kind(manifests: list[Manifest]) -> dict[str, datetime]:
    newest: dict[str, datetime] = {}
    for manifest in manifests:
        if manifest.kind not in newest or manifest.started_at > newest[manifest.kind]:
            newest[manifest.kind] = manifest.started_at
    return newest


class ManifestWatcher:
    """Brings metrics and health up to date with backups taken outside the scheduler
    (``pgbackup backup ...`` run by hand next to the daemon): rescans the manifests
    whenever the backup directory has changed."""

    def __init__(self, settings: Settings, metrics: Metrics, health: HealthState, runner: BackupRunner):
        self.own_run_ids = runner.own_run_ids
        self.listeners = runner.manifest_listeners
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self._seen_mtime: float | None = None
        self._lock = threading.Lock()

    def refresh(self) -> list[Manifest]:
        with self._lock:
            try:
                mtime = self.settings.backup_dir.stat().st_mtime
            except OSError:
                return []
            if mtime == self._seen_mtime:
                return []
            self._seen_mtime = mtime
            scan = scan_manifests(self.settings.backup_dir)
            for path, problem in scan.unreadable:
                log.warning("manifest_unreadable", file=path.name, error=problem)
            self.metrics.load_manifests(scan.manifests)
            taken_elsewhere = [m for m in scan.manifests if m.run_id not in self.own_run_ids]
            for kind, started in newest_success_by_kind(taken_elsewhere).items():
                self.health.run_finished_elsewhere(kind, started)
            for listener in self.listeners:
                try:
                    listener(scan.manifests)
                except Exception:  # a feature's gauges must never break /metrics
                    log.exception("manifest_listener_failed")
            return scan.manifests


@dataclass
class AssembledDaemon:
    metrics: Metrics
    health: HealthState
    runner: BackupRunner
    jobs: list[ScheduledJob]
    watcher: ManifestWatcher
    found: list[Manifest]  # the manifests on disk at start-up


def assemble(settings: Settings, started: datetime) -> AssembledDaemon:
    """The daemon before it schedules or serves anything: features installed, the run
    counters of every scheduled target known now at 0 (increase() in the alert rules sees
    their first failure), and metrics and health restored from the manifests."""
    ensure_backup_dir(settings.backup_dir)
    metrics = Metrics()
    metrics.configure(settings.backup_max_age_hours, settings.backup_min_size_bytes)
    health = HealthState(started, timedelta(hours=settings.backup_max_age_hours))
    runner = BackupRunner(settings, metrics, health, cancel=threading.Event())

    backups = backup_jobs(settings, runner)
    for job in backups:
        if settings.trigger(job.expression) is not None:
            runner.declare_expected_targets(job.job_id)
    jobs = backups + install_features(settings, runner, metrics)
    for job in jobs:
        if job.health_kind:
            health.schedule(job.health_kind, settings.trigger(job.expression), None)
    metrics.publish_allowances(health.allowances())
    # One scan of BACKUP_DIR restores metrics, health and the features' gauges from the manifests.
    watcher = ManifestWatcher(settings, metrics, health, runner)
    found = watcher.refresh()
    return AssembledDaemon(metrics, health, runner, jobs, watcher, found)


def run_daemon(settings: Settings) -> int:
    daemon = assemble(settings, datetime.now(settings.timezone))
    metrics, health, watcher, cancel = daemon.metrics, daemon.health, daemon.watcher, daemon.runner.cancel
    scheduler, executor = build_scheduler(settings, daemon.jobs)
    http = start_http_server(
        settings.metrics_address, settings.metrics_port, metrics, health, lambda: datetime.now(settings.timezone),
        before_response=watcher.refresh,
    )
    _stop_on_signals(scheduler, cancel)

    log.info("daemon_started", backup_dir=str(settings.backup_dir), metrics_port=settings.metrics_port,
             method="docker_exec" if settings.uses_docker_exec else "tcp", artifacts_found=len(daemon.found))
    health.scheduler_running = True
    metrics.scheduler_running.set(1)
    try:
        threading.Timer(0.5, log_next_runs, args=(scheduler,)).start()
        scheduler.start()  # blocks until a signal shuts the scheduler down
    finally:
        health.scheduler_running = False
        metrics.scheduler_running.set(0)
        log.info("daemon_stopping", waiting_for_running_jobs=True)
        executor.shutdown(wait=True)
        http.shutdown()
        log.info("daemon_stopped")
    return 0


def _stop_on_signals(scheduler, cancel: threading.Event) -> None:
    def stop(signum: int, frame: object) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        cancel.set()
        # shutdown() takes scheduler locks: never from inside the signal handler itself.
        threading.Thread(target=scheduler.shutdown, kwargs={"wait": False}, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
