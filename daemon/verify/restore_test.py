"""The scheduled restore test (SCHEDULE_RESTORE_TEST): the newest full backup and each
database's newest dump are restored into a throwaway PostgreSQL container (see throwaway.py)
and compared with their manifests.

Metrics: pgbackup_restore_test_runs_total{status}, ..._last_run_success,
..._duration_seconds (the measured time to restore: the RTO) and
..._last_success_timestamp_seconds{target} (target "all" for the full backup, "point-in-time"
for the recovery of the newest base backup with WAL_STREAMING=on, verify/pitr_proof.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import docker

from daemon.errors import Cancelled, PgBackupError
from daemon.logs import get_logger
from daemon.monitoring.metrics import Metrics
from daemon.notify import Notice, Notifier
from daemon.schedule import allowed_age
from daemon.scheduler import ScheduledJob
from daemon.settings import Settings
from daemon.sources.connect import docker_client
from daemon.verify.checks import static_checks
from daemon.verify.pitr_proof import prove_recovery
from daemon.verify.throwaway import RestoreTestError, TargetResult, latest_backups, restore_into_throwaway

log = get_logger(__name__)

PITR_TARGET = "point-in-time"  # the restore test's target (metric label) for the recovery proof


@dataclass
class RestoreTestRun:
    results: list[TargetResult] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.results) and all(result.ok for result in self.results)


NotifyFailure = Callable[["RestoreTestRun"], None]


def run_restore_test(
    settings: Settings, metrics: Metrics, client: docker.DockerClient | None = None,
    labels: dict[str, str] | None = None, notify: NotifyFailure | None = None,
    cancel: threading.Event | None = None,
) -> RestoreTestRun:
    """One scheduled restore test: restore, compare, record metrics, ``notify`` on failure.
    A stop (``cancel``) removes the throwaway container at once; a run cut short that way is no
    result: logged, neither counted nor notified."""
    started = time.monotonic()
    run = RestoreTestRun()
    try:
        now = datetime.now(settings.timezone)
        selections = latest_backups(settings, now)
        if not selections and not settings.wal_streaming:
            raise RestoreTestError(f"there is no backup with a manifest in {settings.backup_dir} to test")
        checked = []
        for selected in selections:
            try:
                static_checks(selected, local_tools=False, decryption=settings.decryption)
                checked.append(selected)
            except PgBackupError as error:
                target = "all" if selected.is_full else selected.manifest.target
                run.results.append(TargetResult(target, selected.manifest.file, False, str(error)))
        if checked:
            run.results += restore_into_throwaway(settings, checked, client, labels, cancel)
        if settings.wal_streaming:
            proof = prove_recovery(settings, now, client=client, labels=labels, cancel=cancel)
            run.results.append(TargetResult(PITR_TARGET, proof.base, proof.ok,
                                            proof.error or "\n".join(proof.checks), proof.seconds))
    except Cancelled as error:
        log.warning("restore_test_cancelled", reason=str(error), seconds=round(time.monotonic() - started, 1))
        run.error = str(error)
        return run
    except PgBackupError as error:
        run.error = str(error)
    run.seconds = time.monotonic() - started
    record_metrics(metrics, run)
    log_level = log.info if run.ok else log.error
    log_level("restore_test_finished", ok=run.ok, seconds=round(run.seconds, 1), error=run.error,
              failed=[result.target for result in run.results if not result.ok])
    if not run.ok and notify is not None:
        _notify_failure(run, notify)
    return run


def warn_without_docker(settings: Settings) -> None:
    """With POSTGRES_HOST nothing but the restore test needs Docker, so a host without an
    engine here (the no-socket mode) would learn of it only on the test's day: say so at start."""
    try:
        docker_client(settings).close()
    except PgBackupError as error:
        log.warning("restore_test_needs_docker", error=str(error),
                    hint="the restore test runs a throwaway PostgreSQL container: give the sidecar the Docker "
                         "socket (or the socket proxy with ALLOW_RESTORE_TEST=1), or set SCHEDULE_RESTORE_TEST=off")


def record_metrics(metrics: Metrics, run: RestoreTestRun) -> None:
    status = "success" if run.ok else "failure"
    for name in ("success", "failure"):
        metrics.restore_test_runs.labels(name)
    metrics.restore_test_runs.labels(status).inc()
    metrics.restore_test_last_run_success.set(1 if run.ok else 0)
    metrics.restore_test_duration.set(run.seconds)
    now = time.time()
    for result in run.results:
        if result.ok:
            metrics.restore_test_last_success.labels(result.target).set(now)


def _notify_failure(run: RestoreTestRun, notify: NotifyFailure) -> None:
    try:
        notify(run)
    except Exception:  # a notification problem never hides the test's own result
        log.exception("restore_test_notification_failed")


def failure_notice(run: RestoreTestRun, now: datetime) -> Notice:
    """What the Slack/webhook channels are told about a failed restore test."""
    failures = [{"target": result.target, "reason": result.detail} for result in run.results if not result.ok]
    if run.error:
        failures.append({"target": "all", "reason": run.error})
    return Notice(status="failure", kind="restore_test", run_id=now.strftime("%Y%m%d%H%M%S"), failures=failures)


def install(settings: Settings, metrics: Metrics, notifier: Notifier, cancel: threading.Event,
            client: docker.DockerClient | None = None) -> list[ScheduledJob]:
    """The daemon's monthly restore test job; failures go to the daemon's notifier."""
    def notify(run: RestoreTestRun) -> None:
        notifier.send(failure_notice(run, datetime.now(settings.timezone)))

    def restore_test() -> None:
        if cancel.is_set():
            return
        run_restore_test(settings, metrics, client, notify=notify, cancel=cancel)

    trigger = settings.trigger(settings.schedule_restore_test)
    if trigger is not None and not settings.uses_docker_exec:
        threading.Thread(target=warn_without_docker, args=(settings,), name="restore-test-docker", daemon=True).start()
    if trigger is not None:
        max_age = timedelta(hours=settings.backup_max_age_hours)
        allowance = allowed_age(trigger, datetime.now(settings.timezone), max_age)
        metrics.restore_test_max_age.set(allowance.total_seconds())
    return [ScheduledJob("restore_test", trigger, restore_test)]
