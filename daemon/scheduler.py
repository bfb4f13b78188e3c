"""APScheduler wiring: which jobs run when, with misfire, coalescing and no overlap."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger

from daemon.logs import get_logger
from daemon.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class HealthWatch:
    """The backup kind a job produces, which /healthz watches: overdue when its newest success is
    older than ``max_age`` (BACKUP_MAX_AGE_HOURS when None)."""

    kind: str
    max_age: timedelta | None = None


@dataclass(frozen=True)
class ScheduledJob:
    job_id: str  # e.g. "full", "databases", "retention"
    trigger: BaseTrigger | None  # the schedule setting, parsed once; None when it is "off"
    func: Callable[[], None]
    health: HealthWatch | None = None  # None for housekeeping jobs
    quiet: bool = False  # a frequent check: APScheduler's "Running job"/"executed" lines left out


class _QuietJobs(logging.Filter):
    """Drops APScheduler's info lines about the quiet jobs (a check every few seconds would fill
    the log); their warnings and errors, and the jobs' own log lines, stay."""

    def __init__(self, job_ids: set[str]):
        super().__init__()
        self.job_ids = job_ids

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(f'"{job_id} (' in message for job_id in self.job_ids)


def build_scheduler(settings: Settings, jobs: list[ScheduledJob]) -> tuple[BlockingScheduler, ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=4)
    scheduler = BlockingScheduler(timezone=settings.timezone, executors={"default": executor})
    quiet = {job.job_id for job in jobs if job.quiet}
    if quiet:
        logging.getLogger("apscheduler.executors.default").addFilter(_QuietJobs(quiet))
    for job in jobs:
        if job.trigger is None:
            log.info("job_disabled", job=job.job_id)
            continue
        scheduler.add_job(
            logging_failures(job),
            job.trigger,
            id=job.job_id,
            name=job.job_id,
            misfire_grace_time=settings.misfire_grace_seconds,
            coalesce=True,
            max_instances=1,
        )
    return scheduler, executor


def logging_failures(job: ScheduledJob) -> Callable[[], None]:
    """The job's function with any exception logged as ``scheduled_job_failed``: one failed
    run is logged our way, and the job runs again at its next time."""

    def run_job() -> None:
        try:
            job.func()
        except Exception:
            log.exception("scheduled_job_failed", job=job.job_id)

    run_job.__name__ = getattr(job.func, "__name__", job.job_id)
    return run_job


def log_next_runs(scheduler: BlockingScheduler) -> None:
    for job in scheduler.get_jobs():
        log.info("job_scheduled", job=job.id, next_run=job.next_run_time.isoformat() if job.next_run_time else None)
