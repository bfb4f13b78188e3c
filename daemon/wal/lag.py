"""How far behind the receiver is, what the slot keeps on the server, and the time up to which
recovery is possible (pure: a reading of the server and the clock in, figures and problems out).

- **Receive lag** (bytes): the server's current WAL position minus what the receiver has flushed.
  The receiver's flush position is its row in ``pg_stat_replication`` while it is connected, else
  the slot's ``restart_lsn``: ``pg_receivewal --synchronous`` reports every flush, and a physical
  slot moves on only to the reported flush position.
- **Retained** (bytes): the server's current position minus the slot's ``restart_lsn``: the WAL
  the server keeps for the slot (in ``pg_wal``, on the database's disk).
- **Recoverable until**: when the reading finds the receiver caught up (lag 0), every commit the
  server made before the reading is on the sidecar's disk, so recovery is possible up to the time
  of the reading, even on a server that has written nothing for hours. Otherwise it is the newest
  of the last caught-up reading and the time WAL last arrived: commits up to about then.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.wal.segments import parse_lsn

RETAINED_SHARE_OF_KEEP_SIZE = 0.8  # alert while a fifth of max_slot_wal_keep_size is still left
DANGEROUS_WAL_STATUS = ("unreserved", "lost")  # the server is removing (or has removed) WAL the slot needs
MIB = 1024 * 1024


@dataclass(frozen=True)
class SlotReading:
    """One look at the server: its WAL position and the slot's, as the poll query returns them."""

    current_lsn: int
    restart_lsn: int | None  # None: the slot holds no WAL (not reserved yet, or lost)
    receiver_flush_lsn: int | None  # None: no receiver connected on the slot
    wal_status: str  # reserved | extended | unreserved | lost ('' when the slot does not exist)
    safe_wal_size: int | None  # bytes the server may still write before the slot is at risk; None: unlimited
    max_slot_wal_keep_size_mb: int  # -1: unlimited
    exists: bool = True
    active: bool = False

    @property
    def flushed_lsn(self) -> int | None:
        """What the receiver has on disk: its reported flush position, else the slot's position."""
        positions = [lsn for lsn in (self.receiver_flush_lsn, self.restart_lsn) if lsn is not None]
        return max(positions) if positions else None

    @property
    def lag_bytes(self) -> int | None:
        flushed = self.flushed_lsn
        return max(0, self.current_lsn - flushed) if flushed is not None else None

    @property
    def retained_bytes(self) -> int | None:
        return max(0, self.current_lsn - self.restart_lsn) if self.restart_lsn is not None else None


def parse_reading(row: str) -> SlotReading:
    """The poll query's row: ``current|restart|flush|wal_status|safe_wal_size|keep_size_mb|exists|active``,
    empty fields for NULL."""
    current, restart, flush, wal_status, safe, keep_size, exists, active = row.strip().split("|")
    return SlotReading(
        current_lsn=parse_lsn(current), restart_lsn=parse_lsn(restart) if restart else None,
        receiver_flush_lsn=parse_lsn(flush) if flush else None, wal_status=wal_status,
        safe_wal_size=int(safe) if safe else None, max_slot_wal_keep_size_mb=int(keep_size),
        exists=exists == "t", active=active == "t",
    )


def recoverable_until(lag_bytes: int | None, checked_at: float, last_caught_up: float | None,
                      last_received: float | None) -> float | None:
    """Seconds since the epoch up to which the archive holds every commit (module docstring)."""
    if lag_bytes == 0:
        return checked_at
    known = [moment for moment in (last_caught_up, last_received) if moment is not None]
    return min(max(known), checked_at) if known else None


def retained_limit(setting_bytes: int, max_slot_wal_keep_size_mb: int) -> int:
    """The retention above which the slot is a danger: WAL_SLOT_RETAINED_MAX_BYTES, or less when the
    server limits the slot (max_slot_wal_keep_size): then 80 % of that limit, so that the alert comes
    while the server still keeps every segment the archive lacks."""
    if max_slot_wal_keep_size_mb < 0:
        return setting_bytes
    return min(setting_bytes, int(max_slot_wal_keep_size_mb * MIB * RETAINED_SHARE_OF_KEEP_SIZE))


def rpo_problem(recoverable: float | None, now: float, max_lag_seconds: float) -> str | None:
    """/healthz's text when recovery reaches back further than WAL_MAX_LAG_SECONDS, else None."""
    if recoverable is None:
        return None  # nothing received yet: the streaming problem says why
    behind = now - recoverable
    if behind <= max_lag_seconds:
        return None
    return (f"point-in-time recovery reaches only {behind:.0f} s back, more than WAL_MAX_LAG_SECONDS "
            f"({max_lag_seconds:.0f} s): the WAL receiver is behind or down")


def retention_problem(reading: SlotReading, limit_bytes: int) -> str | None:
    """/healthz's text when the slot keeps too much WAL on the server or the server drops WAL it needs."""
    problems = []
    retained = reading.retained_bytes
    if retained is not None and retained > limit_bytes:
        problems.append(f"the slot keeps {retained} bytes of WAL on the database server, more than "
                        f"{limit_bytes} (WAL_SLOT_RETAINED_MAX_BYTES, or 80 % of max_slot_wal_keep_size): "
                        "the receiver is behind or down and the server's disk fills")
    if reading.wal_status in DANGEROUS_WAL_STATUS:
        problems.append(f"the slot's wal_status is {reading.wal_status!r}: the server "
                        + ("has removed WAL the archive lacks; take a base backup to start a new window"
                           if reading.wal_status == "lost" else
                           "will remove WAL the archive lacks at its next checkpoint"))
    return "; ".join(problems) or None
