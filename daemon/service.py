"""The long-running daemon: metrics restored from disk, the HTTP endpoints, the schedule,
and a shutdown that stops a running backup cleanly when the container is stopped."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import docker
from apscheduler.schedulers.blocking import BlockingScheduler

from daemon import catch_up
from daemon.backup.extensions import RunExtensions
from daemon.backup.runner import METRIC_KIND, BackupRunner
from daemon.errors import Cancelled
from daemon.hooks import install as hooks
from daemon.housekeeping import debris
from daemon.housekeeping import install as housekeeping
from daemon.identity import this_instance
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.monitoring.health import HealthState
from daemon.monitoring.httpserver import start_http_server
from daemon.monitoring.metrics import Metrics
from daemon.monitoring.status import StatusSource
from daemon.monitoring.statuspage import render_page
from daemon.monitoring.watcher import ManifestWatcher
from daemon.notify import Notifier, channels_from_settings, ping
from daemon.scheduler import HealthWatch, ScheduledJob, build_scheduler, log_next_runs
from daemon.settings import Settings
from daemon.storage.local import ensure_backup_dir, unwritable_reason
from daemon.storage.s3 import S3_ERRORS, Bucket, describe
from daemon.storage.s3_claim import PrefixClaimedElsewhere, ensure_claimed
from daemon.verify import restore_test
from daemon.volumes import install as volume_snapshots
from daemon.wal import install as wal_streaming

log = get_logger(__name__)

BACKUP_DIR_PROBLEM = "backup_dir_unwritable"
S3_CLAIM_PROBLEM = "s3_prefix_claimed_elsewhere"


def equipped_runner(settings: Settings, metrics: Metrics, health: HealthState, *,
                    docker_client: docker.DockerClient | None = None,
                    cancel: threading.Event | None = None) -> tuple[BackupRunner, list[ScheduledJob]]:
    """A runner with every feature installed on its extensions, and the jobs the features
    schedule besides the backups: the daemon's, and that of a backup taken by hand (which gets
    what a scheduled one gets: run log, offsite copy, notification, retention after success,
    hooks and pings). ``cancel``: the stop of a one-shot command (SIGTERM/SIGINT); the daemon's
    is made here."""
    extensions = RunExtensions()
    cancel = cancel or threading.Event()
    runner = BackupRunner(settings, metrics, health, extensions, cancel=cancel, docker_client=docker_client)
    notifier = Notifier(channels_from_settings(settings), metrics, settings.notify_timeout_seconds,
                        settings.notify_on_success)
    jobs = housekeeping.install(settings, extensions, metrics, notifier, runner.clock, cancel)
    jobs += volume_snapshots.install(settings, runner, extensions, metrics, docker_client, notifier)
    jobs += restore_test.install(settings, metrics, notifier, cancel, docker_client)
    jobs += wal_streaming.install(settings, runner, metrics)
    hooks.install(settings, extensions, metrics, cancel)
    ping.install(settings, extensions, metrics)
    return runner, jobs


def backup_jobs(settings: Settings, runner: BackupRunner) -> list[ScheduledJob]:
    """One job per scheduled request; its job id is the request (full, databases, tables)."""
    schedules = {"full": settings.schedule_full, "databases": settings.schedule_databases}
    if settings.backup_tables:
        schedules["tables"] = settings.schedule_tables
    return [
        ScheduledJob(request, settings.trigger(expression), _job(runner, request), HealthWatch(METRIC_KIND[request]))
        for request, expression in schedules.items()
    ]


def _job(runner: BackupRunner, request: str) -> Callable[[], None]:
    def run_scheduled() -> None:
        if runner.cancel.is_set():
            return
        try:
            runner.run(request)
        except Cancelled as error:
            log.warning("run_cancelled", kind=METRIC_KIND[request], reason=str(error))

    run_scheduled.__name__ = f"backup_{request}"
    return run_scheduled


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
    their first failure), /healthz told of every scheduled kind, and metrics and health
    restored from the manifests."""
    try:
        ensure_backup_dir(settings.backup_dir)
    except OSError:
        pass  # reported, with what to do, by the BACKUP_DIR check before the daemon serves anything
    metrics = Metrics()
    metrics.configure(settings.backup_max_age_hours, settings.backup_min_size_bytes)
    health = HealthState(started, timedelta(hours=settings.backup_max_age_hours))
    runner, feature_jobs = equipped_runner(settings, metrics, health)
    backups = backup_jobs(settings, runner)
    for job in backups:
        if job.trigger is not None:
            runner.declare_expected_targets(job.job_id)
    jobs = backups + feature_jobs
    for job in jobs:
        if job.health is not None:
            health.schedule(job.health.kind, job.trigger, None, max_age=job.health.max_age)
    metrics.publish_allowances(health.allowances())
    # One scan of BACKUP_DIR restores metrics, health and the features' gauges from the manifests.
    watcher = ManifestWatcher(settings.backup_dir, metrics, health, runner.own_run_ids,
                              runner.extensions.manifests_found, runner.clock, settings.signing_key)
    found = watcher.refresh()
    return AssembledDaemon(metrics, health, runner, jobs, watcher, found)


def run_daemon(settings: Settings) -> int:
    check_object_lock(settings)
    daemon = assemble(settings, datetime.now(settings.timezone))
    metrics, health, watcher, cancel = daemon.metrics, daemon.health, daemon.watcher, daemon.runner.cancel
    scheduler, executor = build_scheduler(settings, daemon.jobs)
    if settings.catch_up:  # runs missed while the daemon was stopped, once each (daemon/catch_up.py)
        catch_up.schedule_catch_up(scheduler, daemon.jobs, daemon.found, datetime.now(settings.timezone),
                                   timedelta(seconds=settings.catch_up_delay_seconds), settings.misfire_grace_seconds)
    def before_response() -> None:
        watcher.refresh()
        _check_backup_dir(settings, health)

    _check_backup_dir(settings, health)
    if settings.offsite_enabled:  # in the background: an S3 that does not answer must not delay the start
        threading.Thread(target=check_s3_claim, args=(settings, health), name="s3-claim", daemon=True).start()
    status = StatusSource(watcher.manifests, health, metrics, [(job.job_id, job.trigger) for job in daemon.jobs])
    http = start_http_server(
        settings.metrics_address, settings.metrics_port, metrics, health, lambda: datetime.now(settings.timezone),
        before_response=before_response, status_page=lambda now: render_page(status.report(now)),
    )
    _stop_on_signals(scheduler, cancel)
    # Leftovers of a sidecar that was killed (SIGKILL, OOM): in the background, so that /healthz
    # answers at once; it holds the backup lock only for its short sweeps.
    threading.Thread(target=debris.sweep_debris, args=(settings, metrics), name="debris-sweep", daemon=True).start()
    wal = wal_streaming.start(settings, metrics, health, cancel)

    log.info("daemon_started", backup_dir=str(settings.backup_dir), metrics_port=settings.metrics_port,
             method=_configured_method(settings), artifacts_found=len(daemon.found))
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
        wal.join(timeout=wal_streaming.STOP_TIMEOUT_SECONDS)
        http.shutdown()
        log.info("daemon_stopped")
    return 0


def _check_backup_dir(settings: Settings, health: HealthState) -> None:
    """/healthz is unhealthy, with the reason, while BACKUP_DIR cannot be written: the next backup
    would fail, and waiting for it (03:00) to find out is too late. Logged when it changes."""
    reason = unwritable_reason(settings.backup_dir)
    if reason != health.problem(BACKUP_DIR_PROBLEM):
        if reason is None:
            log.info("backup_dir_writable_again", backup_dir=str(settings.backup_dir))
        else:
            log.error("backup_dir_unwritable", error=reason)
    health.set_problem(BACKUP_DIR_PROBLEM, reason)


def check_object_lock(settings: Settings) -> None:
    """With S3_OBJECT_LOCK_DAYS, a bucket without Object Lock stops the start (SettingsError, exit 2):
    its copies could be deleted by the sidecar's own keys. An S3 that does not answer is only logged."""
    if not (settings.offsite_enabled and settings.s3_object_lock_days):
        return
    try:
        Bucket.from_settings(settings).check_object_lock()
    except S3_ERRORS as error:
        log.warning("s3_object_lock_not_checked", error=describe(error))


def check_s3_claim(settings: Settings, health: HealthState) -> None:
    """Claim the S3 prefix at start, so that a second install pointed at it finds out now (its
    /healthz unhealthy with the reason) and not at its first upload (storage/s3_claim.py)."""
    try:
        ensure_claimed(Bucket.from_settings(settings), this_instance(settings), datetime.now(settings.timezone))
    except PrefixClaimedElsewhere as error:
        log.error("s3_prefix_claimed_elsewhere", error=str(error))
        health.set_problem(S3_CLAIM_PROBLEM, str(error))
    except Exception as error:  # noqa: BLE001 - S3 down at start: the uploads report it when they fail
        log.warning("s3_claim_not_checked", error=describe(error))


def _configured_method(settings: Settings) -> str:
    """How dumps will reach the server (each manifest records the method a run really used)."""
    if not settings.uses_docker_exec:
        return "tcp"
    if settings.dump_connection == "exec" or settings.postgres_password is None:
        return "docker_exec"
    return "container_tcp, else docker_exec"


def _stop_on_signals(scheduler: BlockingScheduler, cancel: threading.Event) -> None:
    def stop(signum: int, frame: object) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        cancel.set()
        # shutdown() takes scheduler locks: never from inside the signal handler itself.
        threading.Thread(target=scheduler.shutdown, kwargs={"wait": False}, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
