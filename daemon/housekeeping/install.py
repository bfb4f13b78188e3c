"""The housekeeping that follows every run, wired onto the run extensions: the run log file,
offsite copies (sinks while the dump is written, the backlog after the run), the retention
sweep after a good run and on its own schedule, and the run's notification."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime

from daemon.backup.extensions import RunExtensions
from daemon.backup.outcome import RunOutcome
from daemon.errors import PgBackupError
from daemon.housekeeping.offsite import FAILED, Offsite
from daemon.housekeeping.prune import OpenBucket, locked_sweep, sweep
from daemon.housekeeping.runlog import run_log_wrapper
from daemon.logs import get_logger
from daemon.monitoring.metrics import Metrics
from daemon.notify import Notifier, notice_for_run
from daemon.scheduler import ScheduledJob
from daemon.settings import Settings

log = get_logger(__name__)


def install(settings: Settings, extensions: RunExtensions, metrics: Metrics, notifier: Notifier,
            clock: Callable[[], datetime], cancel: threading.Event) -> list[ScheduledJob]:
    """Register the run log, offsite copies, retention and notification; returns the retention job."""
    offsite = Offsite(settings, metrics, clock, cancel=cancel) if settings.offsite_enabled else None
    extensions.wrap_runs(run_log_wrapper(settings.backup_dir, clock))
    if offsite is not None:
        offsite.declare_known_targets()
        extensions.listen_to_manifests(offsite.load_metrics)
        extensions.add_sinks(offsite.sinks)
        extensions.wrap_runs(_failures_cleared(offsite))
        extensions.after_runs(_backlog_uploaded(offsite))
    # The bucket is built on first use, inside the sweep's offsite part: a client that cannot be
    # built fails that part only, never the local sweep.
    open_bucket: OpenBucket | None = (lambda: offsite.bucket) if offsite is not None else None
    extensions.after_runs(_retention_after_success(settings, metrics, clock, open_bucket))
    extensions.after_runs(_notified(notifier, offsite))
    return [ScheduledJob("retention", settings.trigger(settings.schedule_retention),
                         _scheduled_retention(settings, metrics, clock, cancel, open_bucket))]


def _failures_cleared(offsite: Offsite) -> Callable[[RunOutcome], AbstractContextManager[object]]:
    def clear_offsite_failures(outcome: RunOutcome) -> AbstractContextManager[object]:
        offsite.failures.clear()  # the notification of this run names this run's failures only
        return nullcontext()

    return clear_offsite_failures


def _backlog_uploaded(offsite: Offsite) -> Callable[[RunOutcome], None]:
    def offsite_backlog(outcome: RunOutcome) -> None:
        failed_now = {m.file for m in outcome.artifacts if m.offsite.get("status") == FAILED}
        if not failed_now:  # S3 just failed this run: the backlog waits for a later one
            offsite.upload_backlog()

    return offsite_backlog


def _retention_after_success(settings: Settings, metrics: Metrics, clock: Callable[[], datetime],
                             open_bucket: OpenBucket | None) -> Callable[[RunOutcome], None]:
    def retention_after_success(outcome: RunOutcome) -> None:
        if outcome.ok:
            sweep(settings, metrics, clock(), open_bucket=open_bucket)

    return retention_after_success


def _notified(notifier: Notifier, offsite: Offsite | None) -> Callable[[RunOutcome], None]:
    def notify(outcome: RunOutcome) -> None:
        failures = offsite.failures if offsite is not None else []
        notifier.send(notice_for_run(outcome, failures))
        failures.clear()

    return notify


def _scheduled_retention(settings: Settings, metrics: Metrics, clock: Callable[[], datetime],
                         cancel: threading.Event, open_bucket: OpenBucket | None) -> Callable[[], None]:
    def retention() -> None:
        if cancel.is_set():
            return
        try:
            locked_sweep(settings, metrics, clock(), open_bucket=open_bucket)
        except PgBackupError as error:
            log.error("retention_failed", error=str(error))

    return retention
