"""When the daemon starts again the containers a volume snapshot stopped, and how often it tries.

Rules (pure: the record's time and ``now`` in, a decision out):

- A record of stopped containers younger than ``RECORD_MAX_AGE`` is acted on: its containers
  are started, and a failed start is retried with back-off until they run or the record expires.
- An older record (or one whose time cannot be read) is stale and never acted on: for that long
  the database has been down and loudly reported, so an operator has had time to take over, and
  may have stopped it on purpose since (maintenance, a restore by hand). Starting it then could
  undo that; leaving it stopped and saying so cannot. A snapshot restarts its own containers in
  a ``finally`` within minutes; only a dead sidecar or a failing start leaves a record this old.
- Retries back off: ``FIRST_RETRY`` after the first failure, doubling up to ``MAX_RETRY``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

RECORD_MAX_AGE = timedelta(hours=6)
FIRST_RETRY = timedelta(seconds=15)
MAX_RETRY = timedelta(minutes=10)


def is_stale(stopped_at: datetime | None, now: datetime, max_age: timedelta = RECORD_MAX_AGE) -> bool:
    """Whether a record written at ``stopped_at`` is too old to act on (None: time unknown, stale)."""
    if stopped_at is None:
        return True
    if stopped_at.tzinfo is None:
        stopped_at = stopped_at.replace(tzinfo=timezone.utc)
    return now - stopped_at > max_age


def retry_delay(failures: int) -> timedelta:
    """How long to wait after the ``failures``-th failed start in a row (1, 2, ...) before the next."""
    if failures < 1:
        return timedelta(0)
    doublings = min(failures - 1, 16)  # 15 s * 2**16 is far past MAX_RETRY already
    return min(FIRST_RETRY * (2 ** doublings), MAX_RETRY)


def parse_time(text: str) -> datetime | None:
    """A record's ISO time, or None when it cannot be read."""
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
