"""The time limits of a backup run: how long a dump tool waits for its table locks
(DUMP_LOCK_WAIT_TIMEOUT_SECONDS, pg_dump's ``--lock-wait-timeout``, set in
sources/postgres.py), and how long a whole run
may take (RUN_DEADLINE_SECONDS). Without them a dump queued behind another session's lock
held the backup lock for ever while /healthz said 200."""

from __future__ import annotations

import re
import threading
import time
from types import TracebackType

from daemon.errors import CommandFailed, PgBackupError
from daemon.logs import get_logger

log = get_logger(__name__)

_WATCH_SECONDS = 0.5
# pg_dump: "error: query failed: ERROR:  canceling statement due to statement timeout"
#          "detail: Query was: LOCK TABLE public.users IN ACCESS SHARE MODE"
_LOCK_TIMED_OUT = re.compile(r"canceling statement due to (?:statement|lock) timeout", re.IGNORECASE)
_LOCKED_TABLE = re.compile(r"LOCK TABLE (?P<table>\S+) IN ACCESS SHARE MODE", re.IGNORECASE)


class LockWaitTimedOut(PgBackupError):
    """A dump tool gave up waiting for a table lock another session holds."""


class RunDeadlinePassed(PgBackupError):
    """The run took longer than RUN_DEADLINE_SECONDS and was stopped."""

    def __init__(self, kind: str, seconds: int):
        super().__init__(f"the {kind} run passed its deadline (RUN_DEADLINE_SECONDS={seconds}) and was stopped; "
                         "raise RUN_DEADLINE_SECONDS if such a run really takes this long, else see what slowed it")


def explain_lock_wait(error: CommandFailed, seconds: int) -> PgBackupError:
    """The tool's failure, said as a lock wait that timed out when its stderr shows one."""
    if not _LOCK_TIMED_OUT.search(error.stderr_tail) or "LOCK TABLE" not in error.stderr_tail:
        return error
    table = _LOCKED_TABLE.search(error.stderr_tail)
    what = f"a lock on {table['table']}" if table else "a table lock"
    return LockWaitTimedOut(
        f"the dump waited longer than DUMP_LOCK_WAIT_TIMEOUT_SECONDS={seconds} for {what} that another session "
        "holds (see pg_locks), and gave up; nothing was kept. The next run tries again"
    )


class RunDeadline:
    """The stop event of one run: set when ``stop`` (the daemon's shutdown) is set, or when
    ``seconds`` have passed since the run started (then ``passed`` is True)."""

    def __init__(self, stop: threading.Event, seconds: int):
        self.stop = stop
        self.seconds = seconds
        self.event = threading.Event()
        self.passed = False
        self._ended = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="run-deadline", daemon=True)

    def __enter__(self) -> RunDeadline:
        self._ends_at = time.monotonic() + self.seconds
        self._watcher.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._ended.set()
        self._watcher.join()

    def _watch(self) -> None:
        while not self._ended.wait(_WATCH_SECONDS):
            if self.stop.is_set():
                self.event.set()
                return
            if time.monotonic() >= self._ends_at:
                self.passed = True
                log.error("run_deadline_passed", run_deadline_seconds=self.seconds)
                self.event.set()
                return
