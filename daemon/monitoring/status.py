"""What the status page shows, gathered from what the daemon already knows: the manifests the
watcher last scanned, each kind's allowance, the metrics of the latest runs and restore test,
and the schedule. ``build_report`` is pure; ``StatusSource`` reads the daemon's live state.

Colours (``freshness``), per kind and target:
- fresh (green): the newest backup is younger than three quarters of its kind's allowance;
- ageing (amber): older than that, or the latest run of the target failed;
- stale (red): older than the allowance (what /healthz calls overdue), dated in the future
  (its time is unknown), or no backup at all of a kind /healthz calls overdue;
- unwatched (grey): a kind that is not scheduled (pre_migration, tables taken by hand).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from apscheduler.triggers.base import BaseTrigger
from prometheus_client.metrics import MetricWrapperBase

from daemon.clock import is_future
from daemon.housekeeping.offsite import COMPLETE, DELETED, FAILED
from daemon.manifest import Manifest, newest_by_kind_and_target
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics

FRESH, AGEING, STALE, UNWATCHED = "fresh", "ageing", "stale", "unwatched"
AGEING_SHARE = 0.75  # amber once a backup has used up three quarters of its allowance
CHART_DAYS = 30

OFFSITE_LOCATIONS = {
    COMPLETE: "local + offsite",
    FAILED: "local; offsite copy failed",
    DELETED: "local; offsite copy expired",
}


@dataclass(frozen=True)
class SizePoint:
    started_at: datetime
    size_bytes: int


@dataclass(frozen=True)
class BackupStatus:
    """One kind and target: its newest backup (None: none yet) judged against its allowance."""

    kind: str
    target: str
    newest: Manifest | None
    age: timedelta | None
    limit: timedelta | None
    freshness: str
    note: str = ""  # why it is not green, in words
    location: str = ""
    sizes: list[SizePoint] = field(default_factory=list)  # the last CHART_DAYS days, oldest first


@dataclass(frozen=True)
class RestoreTestStatus:
    """The latest restore test of this daemon (the metrics are not kept across restarts)."""

    ran: bool
    passed: bool = False
    seconds: float = 0.0  # the measured restore time: the RTO
    last_success: dict[str, datetime] = field(default_factory=dict)  # by target ("all": the full backup)


@dataclass(frozen=True)
class NextRun:
    job: str
    at: datetime | None  # None: the job's schedule is "off"


@dataclass(frozen=True)
class RecoveryWindow:
    """The span a point-in-time recovery can reach: from the oldest base backup to the newest WAL."""

    earliest: datetime
    latest: datetime


@dataclass(frozen=True)
class StatusReport:
    now: datetime
    healthy: bool
    problems: list[str]
    backups: list[BackupStatus]
    restore_test: RestoreTestStatus
    next_runs: list[NextRun]
    recovery_window: RecoveryWindow | None = None


def freshness(age: timedelta, limit: timedelta | None, last_run_failed: bool) -> tuple[str, str]:
    """The colour of a backup ``age`` old under ``limit`` (None: not scheduled), with the reason."""
    if limit is None:
        return UNWATCHED, "not scheduled: no age limit"
    if age > limit:
        return STALE, "older than its limit"
    if last_run_failed:
        return AGEING, "the latest run failed"
    if age > limit * AGEING_SHARE:
        return AGEING, f"more than {AGEING_SHARE:.0%} of its limit used"
    return FRESH, ""


def location(manifest: Manifest) -> str:
    return OFFSITE_LOCATIONS.get(str(manifest.offsite.get("status", "")), "local")


def size_history(manifests: Iterable[Manifest], now: datetime, days: int = CHART_DAYS) -> list[SizePoint]:
    """Sizes of the backups started in the last ``days`` days (none dated in the future), oldest first."""
    since = now - timedelta(days=days)
    points = [SizePoint(m.started_at, m.size_bytes) for m in manifests
              if since <= m.started_at and not is_future(m.started_at, now)]
    return sorted(points, key=lambda point: point.started_at)


def backup_status(newest: Manifest, history: list[Manifest], limit: timedelta | None, last_run_failed: bool,
                  now: datetime) -> BackupStatus:
    age = now - newest.started_at
    if is_future(newest.started_at, now):
        colour, note = STALE, "dated in the future: its time is unknown (check the clock)"
    else:
        colour, note = freshness(age, limit, last_run_failed)
    return BackupStatus(newest.kind, newest.target, newest, age, limit, colour, note, location(newest),
                        size_history(history, now))


def build_report(
    manifests: list[Manifest], allowances: dict[str, float], failed_targets: set[tuple[str, str]],
    overdue_kinds: set[str], now: datetime, *, healthy: bool = True, problems: Iterable[str] = (),
    restore_test: RestoreTestStatus = RestoreTestStatus(ran=False), next_runs: Iterable[NextRun] = (),
    recovery_window: RecoveryWindow | None = None,
) -> StatusReport:
    """Every kind and target with a backup, a failed latest run, or (scheduled kinds) nothing yet.

    ``allowances``: seconds each scheduled kind may age (HealthState.allowances);
    ``failed_targets``: (kind, target) whose latest run failed; ``overdue_kinds``: as /healthz says.
    """
    newest = newest_by_kind_and_target(manifests)
    history: dict[tuple[str, str], list[Manifest]] = {}
    for manifest in manifests:
        history.setdefault((manifest.kind, manifest.target), []).append(manifest)
    rows = [backup_status(manifest, history[key], _limit(allowances, key[0]), key in failed_targets, now)
            for key, manifest in newest.items()]
    rows += [BackupStatus(kind, target, None, None, _limit(allowances, kind), STALE, "the latest run failed")
             for kind, target in failed_targets - newest.keys()]
    kinds_seen = {kind for kind, _ in newest.keys() | failed_targets}
    rows += [BackupStatus(kind, "", None, None, _limit(allowances, kind),
                          STALE if kind in overdue_kinds else AGEING, "no backup yet")
             for kind in allowances.keys() - kinds_seen]
    rows.sort(key=lambda row: (row.kind, row.target))
    return StatusReport(now, healthy, list(problems), rows, restore_test, list(next_runs), recovery_window)


def _limit(allowances: dict[str, float], kind: str) -> timedelta | None:
    seconds = allowances.get(kind)
    return timedelta(seconds=seconds) if seconds else None


def next_runs(jobs: Iterable[tuple[str, BaseTrigger | None]], now: datetime) -> list[NextRun]:
    """Each job's next fire time after ``now`` (None when its schedule is off), soonest first."""
    runs = [NextRun(job, trigger.get_next_fire_time(None, now) if trigger is not None else None)
            for job, trigger in jobs]
    return sorted(runs, key=lambda run: (run.at is None, run.at.timestamp() if run.at else 0.0, run.job))


def samples(metric: MetricWrapperBase, name: str) -> dict[tuple[str, ...], float]:
    """The current values of ``metric``'s sample ``name``, by label values (in label order)."""
    return {tuple(sample.labels.values()): sample.value
            for family in metric.collect() for sample in family.samples if sample.name == name}


def restore_test_status(metrics: Metrics) -> RestoreTestStatus:
    runs = samples(metrics.restore_test_runs, "pgbackup_restore_test_runs_total")
    if sum(runs.values()) == 0:
        return RestoreTestStatus(ran=False)
    last_success = samples(metrics.restore_test_last_success, "pgbackup_restore_test_last_success_timestamp_seconds")
    return RestoreTestStatus(
        ran=True,
        passed=_value(metrics.restore_test_last_run_success, "pgbackup_restore_test_last_run_success") == 1,
        seconds=_value(metrics.restore_test_duration, "pgbackup_restore_test_duration_seconds"),
        last_success={target: datetime.fromtimestamp(stamp, timezone.utc) for (target,), stamp in last_success.items()},
    )


def _value(metric: MetricWrapperBase, name: str) -> float:
    return samples(metric, name).get((), 0.0)


def failed_targets(metrics: Metrics) -> set[tuple[str, str]]:
    latest = samples(metrics.last_run_success, "pgbackup_last_run_success")
    return {(kind, target) for (kind, target), value in latest.items() if value == 0}


class StatusSource:
    """The daemon's live state as a StatusReport: cheap, since the watcher rescans the manifests
    only when BACKUP_DIR changed (``manifests`` returns its last scan)."""

    def __init__(self, manifests: Callable[[], list[Manifest]], health: HealthState, metrics: Metrics,
                 jobs: Iterable[tuple[str, BaseTrigger | None]],
                 recovery_window: Callable[[], RecoveryWindow | None] = lambda: None):
        self.manifests = manifests
        self.health = health
        self.metrics = metrics
        self.jobs = list(jobs)
        self.recovery_window = recovery_window

    def report(self, now: datetime) -> StatusReport:
        healthy, verdict = self.health.verdict(now)
        problems = [problem["detail"] for problem in verdict["problems"]]
        if not verdict["scheduler_running"]:
            problems.append("the scheduler is not running")
        return build_report(
            self.manifests(), self.health.allowances(), failed_targets(self.metrics),
            {item["kind"] for item in verdict["overdue"]}, now, healthy=healthy, problems=problems,
            restore_test=restore_test_status(self.metrics), next_runs=next_runs(self.jobs, now),
            recovery_window=self.recovery_window(),
        )
