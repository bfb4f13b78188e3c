"""`pgbackup wal status`: the archive on disk (pure summary) and the slot on the server."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from daemon.errors import PgBackupError
from daemon.manifest import Manifest
from daemon.wal.archive import WalRecord
from daemon.wal.base import KIND as BASE_KIND
from daemon.wal.segments import find_gaps, parse_segment
from daemon.wal.server import ReplicationEndpoint

_SLOT_SQL = ("SELECT concat_ws('|', active, coalesce(restart_lsn::text, ''), "
             "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text, ''), "
             "coalesce(wal_status, '')) FROM pg_replication_slots WHERE slot_name = '{slot}'")


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


def slot_state(endpoint: ReplicationEndpoint, slot: str) -> dict[str, object]:
    """The slot on the server: whether the receiver holds it, its restart position, the WAL it keeps."""
    try:
        rows = endpoint.sql.query(_SLOT_SQL.format(slot=slot))
    except PgBackupError as error:
        return {"name": slot, "error": str(error)}
    if not rows:
        return {"name": slot, "exists": False}
    active, restart_lsn, retained, wal_status = rows[0].strip().split("|")
    return {"name": slot, "exists": True, "active": active == "t", "restart_lsn": restart_lsn,
            "retained_bytes": int(retained) if retained else None, "wal_status": wal_status,
            "checked_at": datetime.now().astimezone().isoformat(timespec="seconds")}
