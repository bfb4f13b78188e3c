"""Keeps the database from staying down after a volume snapshot.

A snapshot stops the database container and starts it again in a ``finally``; when that start
fails, or the daemon died while the database was stopped, the record of stopped containers
(``containers``) is left behind. ``RestartSupervisor.check`` runs at start-up and then every
``TICK_SECONDS`` as a scheduled job (never a blocking loop): while a fresh record exists it
starts its containers, backing off between failed attempts (``restart_policy``), until they run
or the record goes stale. Until then it is loud: a /healthz problem, the gauge
``pgbackup_database_stopped_by_sidecar{container}`` (alert ``PgBackupDatabaseStoppedBySidecar``),
``pgbackup_database_restart_failures_total``, an error line per attempt and a notification
naming the container whenever its state changes (failing, left stopped as stale).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import docker
import docker.errors

from daemon.errors import LockBusy, PgBackupError
from daemon.lock import backup_lock
from daemon.logs import get_logger
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.notify import Notice, Notifier
from daemon.settings import Settings
from daemon.sources.connect import docker_client
from daemon.volumes.containers import (
    RecordedRestart,
    postgres_ready_check,
    stale_message,
    start_recorded,
    state_path,
)
from daemon.volumes.restart_policy import RECORD_MAX_AGE, retry_delay

log = get_logger(__name__)

PROBLEM = "database_stopped_by_sidecar"
TICK_SECONDS = 5
FAILING, STALE = "failing", "stale"
_HOLDER = {"kind": "volume", "purpose": "start containers a volume snapshot left stopped"}


class RestartSupervisor:
    """Starts the containers on the record of stopped ones, retrying with back-off, and reports
    every container a snapshot stopped that does not run again. One instance per daemon; its
    ``check`` is called by one thread at a time (start-up, then the scheduler with max_instances=1)."""

    def __init__(self, settings: Settings, metrics: Metrics, health: HealthState, notifier: Notifier | None,
                 client: docker.DockerClient | None = None, cancel: threading.Event | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.notifier = notifier
        self.cancel = cancel
        self.clock = clock or (lambda: datetime.now(settings.timezone))
        self._client = client
        self._failures = 0  # failed attempts in a row
        self._next_attempt: datetime | None = None
        self._reported: dict[str, str] = {}  # container name -> FAILING | STALE, as last reported

    def check(self) -> None:
        """One look at the record: start what it lists when an attempt is due, report what stays down."""
        if not state_path(self.settings.backup_dir).exists():
            self._all_running()
            return
        now = self.clock()
        if self._next_attempt is not None and now < self._next_attempt:
            return
        try:
            with backup_lock(self.settings.backup_dir, _HOLDER, wait=False):
                result = start_recorded(
                    self.client(), self.settings.backup_dir, self.settings.volume_stop_timeout_seconds, now,
                    postgres_ready_check(self.settings.postgres_user), self.cancel,
                )
        except LockBusy:
            return  # a snapshot, restore or clone runs: it starts the containers it stopped itself
        except (PgBackupError, docker.errors.DockerException) as error:
            self._attempt_failed(now, {"unknown": str(error)}, {}, None)
            return
        self._report(now, result)

    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker_client(self.settings)
        return self._client

    def _report(self, now: datetime, result: RecordedRestart) -> None:
        for ref in result.started:
            log.info("database_restarted", container=ref.name, stopped_at=result.record.stopped_at,
                     snapshot=result.record.snapshot, attempts_failed_before=self._failures)
        if not result.failed and not result.stale:
            self._all_running()
            return
        stale = {ref.name: stale_message(result.record, ref) for ref in result.stale}
        self._attempt_failed(now, result.failed, stale, result)

    def _attempt_failed(self, now: datetime, failed: dict[str, str], stale: dict[str, str],
                        result: RecordedRestart | None) -> None:
        """Back off, then publish every container still down: /healthz, gauge, log, notification."""
        if failed:
            self._failures += 1
        delay = retry_delay(max(self._failures, 1))
        self._next_attempt = now + delay
        down = {name: (FAILING, _failing_message(name, error, result, delay)) for name, error in failed.items()}
        down.update({name: (STALE, message) for name, message in stale.items()})
        self._log(down, failed, delay, result)
        self.health.set_problem(PROBLEM, "; ".join(message for _, message in down.values()))
        for name in down:
            self.metrics.database_stopped_by_sidecar.labels(name).set(1)
        for name in set(self._reported) - set(down):
            self.metrics.database_stopped_by_sidecar.labels(name).set(0)
        changed = {name: message for name, (state, message) in down.items() if self._reported.get(name) != state}
        self._reported = {name: state for name, (state, _) in down.items()}
        if changed:
            self._notify(now, changed, result)

    def _log(self, down: dict[str, tuple[str, str]], failed: dict[str, str], delay: timedelta,
             result: RecordedRestart | None) -> None:
        """An error line per failed attempt; a stale record once, when it is first seen."""
        for name, (state, message) in down.items():
            if state == FAILING:
                self.metrics.database_restart_failures.labels(name).inc()
                log.error("database_restart_failed", container=name, error=failed[name], attempt=self._failures,
                          next_attempt_in_seconds=delay.total_seconds(), **_record_fields(result))
            elif self._reported.get(name) != STALE:
                log.error("stopped_container_record_stale", container=name, error=message, **_record_fields(result))

    def _notify(self, now: datetime, messages: dict[str, str], result: RecordedRestart | None) -> None:
        """One notice for the containers whose state changed (not one per attempt)."""
        if self.notifier is None:
            return
        run_id = (result.record.run_id if result and result.record else "") or now.strftime("%Y%m%d%H%M%S")
        failures = [{"target": name, "reason": message} for name, message in messages.items()]
        self.notifier.send(Notice(status="failure", kind="volume", run_id=run_id, failures=failures))

    def _all_running(self) -> None:
        """No record (or nothing left on it to start): every container a snapshot stopped runs or is gone."""
        for name in self._reported:
            self.metrics.database_stopped_by_sidecar.labels(name).set(0)
            log.info("database_stopped_by_sidecar_resolved", container=name)
        self._reported = {}
        self._failures = 0
        self._next_attempt = None
        self.health.set_problem(PROBLEM, None)


def _failing_message(name: str, error: str, result: RecordedRestart | None, delay: timedelta) -> str:
    retry = (f"retrying in {delay.total_seconds():g} s, until {RECORD_MAX_AGE.total_seconds() / 3600:g} h "
             "after the stop (see docs/runbook.md)")
    if result is None or result.record is None:
        return f"database container(s) a volume snapshot stopped may be DOWN: {error}; {retry}"
    return (f"database container {name!r} is DOWN: it was stopped by {result.record.describe()} and could "
            f"not be started again: {error}; {retry}")


def _record_fields(result: RecordedRestart | None) -> dict[str, str]:
    if result is None or result.record is None:
        return {}
    return {"stopped_at": result.record.stopped_at, "snapshot": result.record.snapshot}
