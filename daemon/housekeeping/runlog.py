"""Run log files: every run also writes its own log lines to BACKUP_DIR/backup_YYYYmmdd_HHMMSS.log,
as the team's scripts did, so a run can be read next to the artifacts it produced.

The first line of each run's section is a header that marks the file as ours; the sweep only
prunes run logs that start with it (see prune.py)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path

import structlog

from daemon.backup.outcome import RunOutcome, worker_thread_prefix
from daemon.logs import get_logger, shared_processors
from daemon.naming import stamp

log = get_logger(__name__)

HEADER_KEY = "pgbackup_run_log"


def run_log_name(moment: datetime) -> str:
    return f"backup_{stamp(moment)}.log"


def is_our_run_log(path: Path) -> bool:
    """True when the file starts with the header this module writes."""
    try:
        with path.open("rb") as file:
            first = file.readline(4096)
        return HEADER_KEY in json.loads(first)
    except (OSError, ValueError, TypeError):
        return False


class _RunThreadsFilter(logging.Filter):
    """The lines of the run's own thread and of its worker threads (named by run id)."""

    def __init__(self, thread_id: int, worker_prefix: str):
        super().__init__()
        self.thread_id = thread_id
        self.worker_prefix = worker_prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread_id or (record.threadName or "").startswith(self.worker_prefix)


def _file_handler(path: Path, run_id: str) -> logging.Handler:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
    handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.JSONRenderer()],
        )
    )
    handler.addFilter(_RunThreadsFilter(threading.get_ident(), worker_thread_prefix(run_id)))
    return handler


@contextmanager
def run_log(directory: Path, moment: datetime, run_id: str, kind: str) -> Iterator[Path]:
    """Copy every log line of this thread (and of the run's worker threads) to the run's log
    file while the block runs.

    Two runs starting in the same second share a file (appended, each with its header)."""
    path = directory / run_log_name(moment)
    handler = _file_handler(path, run_id)
    handler.stream.write(json.dumps({HEADER_KEY: 1, "run_id": run_id, "kind": kind,
                                     "started_at": moment.isoformat()}) + "\n")
    handler.stream.flush()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        try:
            handler.close()
            handler.stream.close()
        except OSError as error:
            log.warning("run_log_close_failed", file=path.name, error=str(error))


def run_log_wrapper(directory: Path, clock: Callable[[], datetime]
                    ) -> Callable[[RunOutcome], AbstractContextManager[Path]]:
    """A runner run wrapper (see BackupRunner.run_wrappers) that writes the run log."""

    def write_run_log(outcome: RunOutcome) -> AbstractContextManager[Path]:
        return run_log(directory, clock(), outcome.run_id, outcome.kind)

    return write_run_log
