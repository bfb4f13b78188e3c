"""Is the daemon doing its job? The /healthz verdict, as a pure function of its state."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.triggers.base import BaseTrigger

from daemon.clock import describe_future, is_future


@dataclass
class KindStatus:
    kind: str
    trigger: BaseTrigger | None
    last_success: datetime | None = None  # start of the newest run in which every target succeeded
    running: bool = False
    max_age: timedelta | None = None  # this kind's own allowance (e.g. a weekly job), else the daemon's


def overdue_kinds(
    statuses: list[KindStatus], now: datetime, daemon_started: datetime, max_age: timedelta
) -> list[dict[str, str | None]]:
    """Scheduled kinds with no success within their allowance (``max_age`` unless their own).

    A kind whose run is in progress is judged when that run ends. A known success (this
    process's, or one found in the manifests at start-up) is judged at once: runs due while
    the daemon was down are not made up, so waiting for the next due time would hide a gap.
    A kind that never succeeded is judged once a run of it was due since the daemon started
    (a fresh install is healthy until then). A success dated in the future (a clock that was or
    is wrong) has no believable time: it is overdue, with a ``reason`` saying so.
    """
    overdue = []
    for status in statuses:
        if status.trigger is None or status.running:
            continue
        reason = None
        if status.last_success is not None and is_future(status.last_success, now):
            stale = True
            reason = (f"the newest success is dated in the future ({describe_future(status.last_success, now)}): "
                      "its time is unknown; check the clock and move the future-dated backup out of BACKUP_DIR")
        elif status.last_success is not None:
            stale = now - status.last_success > (status.max_age or max_age)
        else:
            first_due = status.trigger.get_next_fire_time(None, daemon_started)
            stale = first_due is not None and first_due <= now
        if stale:
            overdue.append({
                "kind": status.kind,
                "last_success": status.last_success.isoformat() if status.last_success else None,
                **({"reason": reason} if reason else {}),
            })
    return overdue


class HealthState:
    """What the runner and scheduler tell /healthz; safe to use from several threads."""

    def __init__(self, started_at: datetime, max_age: timedelta):
        self.started_at = started_at
        self.max_age = max_age
        self.scheduler_running = False
        self._statuses: dict[str, KindStatus] = {}
        self._problems: dict[str, str] = {}  # e.g. an unwritable BACKUP_DIR, by name
        self._lock = threading.Lock()

    def schedule(
        self, kind: str, trigger: BaseTrigger | None, last_success: datetime | None,
        max_age: timedelta | None = None,
    ) -> None:
        with self._lock:
            self._statuses[kind] = KindStatus(kind, trigger, last_success, max_age=max_age)

    def set_problem(self, name: str, text: str | None) -> None:
        """Report (or, with None, clear) a condition that keeps the next backups from working."""
        with self._lock:
            if text is None:
                self._problems.pop(name, None)
            else:
                self._problems[name] = text

    def problem(self, name: str) -> str | None:
        with self._lock:
            return self._problems.get(name)

    def allowances(self) -> dict[str, float]:
        """Seconds each scheduled kind may age before /healthz calls it overdue."""
        with self._lock:
            return {s.kind: (s.max_age or self.max_age).total_seconds()
                    for s in self._statuses.values() if s.trigger is not None}

    def run_started(self, kind: str) -> None:
        with self._lock:
            if kind in self._statuses:
                self._statuses[kind].running = True

    def run_finished(self, kind: str, succeeded_from: datetime | None) -> None:
        with self._lock:
            status = self._statuses.get(kind)
            if status is None:
                return
            status.running = False
            if succeeded_from is not None:
                status.last_success = max(filter(None, (status.last_success, succeeded_from)))

    def run_finished_elsewhere(self, kind: str, started: datetime) -> None:
        """A backup of ``kind`` that started at ``started`` succeeded outside this process."""
        with self._lock:
            status = self._statuses.get(kind)
            if status is not None and (status.last_success is None or started > status.last_success):
                status.last_success = started

    def settle_future_successes(self, newest_on_disk: dict[str, datetime], now: datetime) -> None:
        """A kind whose last success is dated in the future takes the newest one on disk instead
        once that is no longer in the future (the future-dated backup was moved away)."""
        with self._lock:
            for status in self._statuses.values():
                newest = newest_on_disk.get(status.kind)
                if (status.last_success is not None and is_future(status.last_success, now)
                        and (newest is None or not is_future(newest, now))):
                    status.last_success = newest

    def verdict(self, now: datetime) -> tuple[bool, dict]:
        with self._lock:
            statuses = [
                KindStatus(s.kind, s.trigger, s.last_success, s.running, s.max_age) for s in self._statuses.values()
            ]
            problems = [{"problem": name, "detail": text} for name, text in sorted(self._problems.items())]
        overdue = overdue_kinds(statuses, now, self.started_at, self.max_age)
        healthy = self.scheduler_running and not overdue and not problems
        body = {
            "status": "ok" if healthy else "unhealthy",
            "scheduler_running": self.scheduler_running,
            "problems": problems,
            "overdue": overdue,
            "running": sorted(s.kind for s in statuses if s.running),
        }
        return healthy, body
