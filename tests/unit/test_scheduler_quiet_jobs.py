"""A frequent check scheduled as a quiet job keeps APScheduler's per-run info lines out of the log."""

from __future__ import annotations

import logging

from apscheduler.triggers.interval import IntervalTrigger

from daemon.scheduler import ScheduledJob, build_scheduler
from daemon.settings import Settings

EXECUTOR_LOGGER = "apscheduler.executors.default"


def record(level: int, job_text: str) -> logging.LogRecord:
    return logging.LogRecord(EXECUTOR_LOGGER, level, __file__, 1, 'Running job "%s" (scheduled at %s)',
                             (job_text, "2026-12-05 07:00:00+00:00"), None)


class TestQuietJobs:
    def test_info_lines_of_a_quiet_job_are_dropped_and_others_kept(self):
        """'Running job' of the quiet volume_restart check is dropped; that of a backup job, and any
        warning about the quiet job (a missed run), are kept."""
        logger = logging.getLogger(EXECUTOR_LOGGER)
        before = list(logger.filters)
        try:
            jobs = [ScheduledJob("volume_restart", IntervalTrigger(seconds=5), lambda: None, quiet=True),
                    ScheduledJob("full", IntervalTrigger(hours=24), lambda: None)]
            build_scheduler(Settings(postgres_container="db", _env_file=None), jobs)
            quiet = "volume_restart (trigger: interval[0:00:05], next run at: 2026-12-05 07:00:05 UTC)"
            assert not logger.filter(record(logging.INFO, quiet))
            assert logger.filter(record(logging.WARNING, quiet))
            assert logger.filter(record(logging.INFO, "full (trigger: interval[1 day, 0:00:00], next run at: …)"))
        finally:
            logger.filters[:] = before
