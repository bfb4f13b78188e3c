"""What a retention sweep did or would do: one item per backup (or WAL span) with its reason,
and the refusals, errors and unusable backups met on the way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from daemon.housekeeping.retention import DELETE

LOCAL = "local"
S3 = "s3"

@dataclass(frozen=True)
class SweepItem:
    location: str  # local | s3 | log
    kind: str
    target: str
    file: str
    started_at: datetime | None
    action: str
    reason: str
    kept_by: tuple[str, ...] = ()  # the rules that keep it (retention.Decision.kept_by)


@dataclass
class SweepReport:
    items: list[SweepItem] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)  # manifests whose artifact is missing or of another size

    @property
    def deleted(self) -> list[SweepItem]:
        return [item for item in self.items if item.action == DELETE]
