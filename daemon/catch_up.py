"""Catch-up: a scheduled backup that came due while the daemon was stopped runs once, soon
after start (CATCH_UP, CATCH_UP_DELAY_SECONDS).

APScheduler only runs a job late while it is running itself (MISFIRE_GRACE_SECONDS); a daemon
restarted across 03:00 would otherwise lose that day's backup. The rule, for each scheduled
backup job (``full``, ``databases``, ``tables``; never the volume snapshot, which stops the
database): when the schedule came due after the newest backup of its kind started, and before
now, the job runs once at ``now + delay``, unless its next regular time comes first. A kind
without any backup yet waits for its schedule: nothing was missed by this install.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger

from daemon.backup.runner import METRIC_KIND, SCHEDULED_REQUESTS
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.schedule import one_second_after
from daemon.scheduler import ScheduledJob, logging_failures

log = get_logger(__name__)


@dataclass(frozen=True)
class MissedRun:
    job_id: str
    due_at: datetime  # the schedule's first time after the newest backup
    newest_backup: datetime


def missed_runs(triggers: Mapping[str, BaseTrigger], newest_backup: Mapping[str, datetime], now: datetime,
                catch_up_at: datetime) -> list[MissedRun]:
    """The jobs (by id) whose schedule came due after their newest backup started and by ``now``,
    and whose next regular time is not before ``catch_up_at`` (then that run makes it up)."""
    missed = []
    for job_id, trigger in triggers.items():
        newest = newest_backup.get(job_id)
        if newest is None:
            continue
        due = trigger.get_next_fire_time(None, one_second_after(newest))
        if due is None or due > now:
            continue
        upcoming = trigger.get_next_fire_time(None, now)
        if upcoming is not None and upcoming <= catch_up_at:
            continue
        missed.append(MissedRun(job_id, due, newest))
    return missed


def newest_backup_by_job(manifests: Iterable[Manifest], job_ids: Iterable[str]) -> dict[str, datetime]:
    """The start of the newest backup of each job's kind (any target, taken by hand or not)."""
    newest: dict[str, datetime] = {}
    for job_id in job_ids:
        starts = [manifest.started_at for manifest in manifests if manifest.kind == METRIC_KIND[job_id]]
        if starts:
            newest[job_id] = max(starts)
    return newest


def schedule_catch_up(scheduler: BaseScheduler, jobs: Iterable[ScheduledJob], manifests: list[Manifest],
                      now: datetime, delay: timedelta, misfire_grace_seconds: int) -> list[MissedRun]:
    """Add a one-shot run ``delay`` after ``now`` for each backup job that missed a run."""
    backups = {job.job_id: job for job in jobs if job.job_id in SCHEDULED_REQUESTS and job.trigger is not None}
    run_at = now + delay
    missed = missed_runs({job_id: job.trigger for job_id, job in backups.items()},
                         newest_backup_by_job(manifests, backups), now, run_at)
    for run in missed:
        scheduler.add_job(logging_failures(backups[run.job_id]), "date", run_date=run_at, id=f"catch_up_{run.job_id}",
                          name=f"catch_up_{run.job_id}", misfire_grace_time=misfire_grace_seconds)
        log.warning("catch_up_scheduled", job=run.job_id, due_at=run.due_at.isoformat(),
                    newest_backup=run.newest_backup.isoformat(), run_at=run_at.isoformat())
    return missed
