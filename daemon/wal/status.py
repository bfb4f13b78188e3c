"""`pgbackup wal status`: the archive on disk (pure summary) and the slot on the server, with the
receiver's lag and the time up to which recovery is possible (as the daemon's monitor reads them)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from daemon.errors import PgBackupError
from daemon.manifest import Manifest
from daemon.wal.archive import WalRecord
from daemon.wal.base import KIND as BASE_KIND
from daemon.wal.lag import recoverable_until, retained_limit
from daemon.wal.monitor import read_slot
from daemon.wal.segments import find_gaps, format_lsn, parse_segment
from daemon.wal.server import ReplicationEndpoint


@dataclass
class ArchiveSummary:
    segments: int
    oldest: str | None
    newest: str | None
    partial: str | None
    gaps: list[str]
    not_copied_offsite: int | None  # None: WAL does not go to S3
    newest_base: str | None
    newest_base_stop_lsn: str | None
    slot: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def lines(self) -> list[str]:
        lines = [f"archive: {self.segments} segments, {self.oldest or '-'} to {self.newest or '-'}; "
                 f"receiving {self.partial or 'nothing'}",
                 f"gaps: {'; '.join(self.gaps) if self.gaps else 'none'}",
                 f"newest base backup: {self.newest_base or 'none'}"
                 + (f" (stop {self.newest_base_stop_lsn})" if self.newest_base else "")]
        if self.not_copied_offsite is not None:
            lines.insert(2, f"not yet copied to S3: {self.not_copied_offsite}")
        if self.slot:
            lines.append("slot: " + ", ".join(f"{key} {value}" for key, value in self.slot.items()))
        return lines


def summarize(records: list[WalRecord], partial: Path | None, manifests: list[Manifest],
              offsite: bool = False) -> ArchiveSummary:
    """What the archive holds: its span, its holes, what S3 lacks, the newest base backup."""
    segments = sorted(segment for record in records if (segment := parse_segment(record.name)) is not None)
    bases = sorted((m for m in manifests if m.kind == BASE_KIND), key=lambda m: m.finished_at)
    newest_base = bases[-1] if bases else None
    return ArchiveSummary(
        segments=len(segments), oldest=segments[0].name if segments else None,
        newest=segments[-1].name if segments else None, partial=partial.name if partial else None,
        gaps=[str(gap) for gap in find_gaps(segments)],
        not_copied_offsite=sum(1 for record in records if not record.offsite_key) if offsite else None,
        newest_base=newest_base.file if newest_base else None,
        newest_base_stop_lsn=str(newest_base.details.get("stop_lsn")) if newest_base else None,
    )


def slot_state(endpoint: ReplicationEndpoint, slot: str, retained_max_bytes: int,
               last_received: float | None = None) -> dict[str, object]:
    """The slot on the server: whether the receiver holds it, its restart position, the WAL it keeps
    against its limit, the receiver's lag, and the time up to which recovery is possible now."""
    checked_at = time.time()  # before the query: every commit before it is at or below the position read
    try:
        reading = read_slot(endpoint.sql, slot)
    except PgBackupError as error:
        return {"name": slot, "error": str(error)}
    if not reading.exists:
        return {"name": slot, "exists": False}
    recoverable = recoverable_until(reading.lag_bytes, checked_at, None, last_received)
    return {"name": slot, "exists": True, "active": reading.active,
            "restart_lsn": format_lsn(reading.restart_lsn) if reading.restart_lsn is not None else None,
            "retained_bytes": reading.retained_bytes,
            "retained_max_bytes": retained_limit(retained_max_bytes, reading.max_slot_wal_keep_size_mb),
            "wal_status": reading.wal_status, "safe_wal_size_bytes": reading.safe_wal_size,
            "receive_lag_bytes": reading.lag_bytes,
            "recoverable_until": _local_time(recoverable) if recoverable is not None else None,
            "checked_at": _local_time(checked_at)}


def _local_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")
