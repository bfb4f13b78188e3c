"""The retention policy: which backups to keep and which to delete, and why.

Pure functions: the manifests and ``now`` come in, decisions go out. The rules, in order:

1. a backup marked keep_forever (pre-migration) is kept;
2. the newest RETENTION_MIN_KEEP backups of each kind and target are kept, however old;
3. a backup is deleted only when it is older than its kind's retention both by the clock
   and measured from the newest backup of its kind and target. The second condition means
   that a daemon that was down, or dumps that kept failing, never eat into the backups that
   were there: the window only moves when new backups arrive;
4. anything else (a kind without a retention rule, a start time in the future) is kept.

A sweep whose decisions would delete every backup of a kind is refused as a whole.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from daemon.errors import PgBackupError
from daemon.manifest import Manifest

KEEP = "keep"
DELETE = "delete"

RUN_LOG_PATTERN = re.compile(r"^backup_(\d{8}_\d{6})\.log$")


class RetentionRefused(PgBackupError):
    """A sweep would have deleted every backup of a kind; nothing was deleted."""


@dataclass(frozen=True)
class Decision:
    manifest: Manifest
    action: str  # KEEP or DELETE
    reason: str

    @property
    def delete(self) -> bool:
        return self.action == DELETE


def decide(
    manifests: Iterable[Manifest], now: datetime, days_by_kind: Mapping[str, int], min_keep: int
) -> list[Decision]:
    """A KEEP or DELETE decision with its reason for every manifest, newest first."""
    if min_keep < 1:
        raise ValueError("min_keep must be at least 1: the newest backup is never deleted")
    groups: dict[tuple[str, str], list[Manifest]] = defaultdict(list)
    for manifest in manifests:
        groups[(manifest.kind, manifest.target)].append(manifest)
    decisions: list[Decision] = []
    for group in groups.values():
        group.sort(key=lambda manifest: manifest.started_at, reverse=True)
        newest = group[0].started_at
        for rank, manifest in enumerate(group):
            decisions.append(_decide_one(manifest, rank, newest, now, days_by_kind, min_keep))
    decisions.sort(key=lambda decision: decision.manifest.started_at, reverse=True)
    return decisions


def _decide_one(
    manifest: Manifest, rank: int, newest: datetime, now: datetime, days_by_kind: Mapping[str, int], min_keep: int
) -> Decision:
    if manifest.keep_forever:
        return Decision(manifest, KEEP, "kept forever (keep_forever)")
    days = days_by_kind.get(manifest.kind)
    if days is None:
        return Decision(manifest, KEEP, f"no retention rule for kind {manifest.kind}")
    if rank < min_keep:
        if min_keep == 1:
            return Decision(manifest, KEEP, f"the newest {manifest.kind} backup of {manifest.target}, kept however old")
        return Decision(manifest, KEEP, f"among the newest {min_keep} {manifest.kind} backups of {manifest.target} "
                                        "(RETENTION_MIN_KEEP)")
    age = now - manifest.started_at
    behind_newest = newest - manifest.started_at
    limit = timedelta(days=days)
    if age <= limit:
        return Decision(manifest, KEEP, f"{_days(age)} old, within {days} days")
    if behind_newest <= limit:
        return Decision(
            manifest, KEEP,
            f"{_days(age)} old, but only {_days(behind_newest)} older than the newest "
            f"{manifest.kind} {manifest.target} (no newer backups to replace it)",
        )
    return Decision(manifest, DELETE, f"{_days(age)} old, older than {days} days")


def refuse_total_loss(decisions: Iterable[Decision]) -> None:
    """Raise RetentionRefused when the decisions would delete every backup of some kind."""
    by_kind: dict[str, list[Decision]] = defaultdict(list)
    for decision in decisions:
        by_kind[decision.manifest.kind].append(decision)
    doomed = sorted(kind for kind, group in by_kind.items() if group and all(d.delete for d in group))
    if doomed:
        raise RetentionRefused(
            f"refusing the retention sweep: it would delete every backup of kind {', '.join(doomed)}; "
            "nothing was deleted"
        )


def plan_sweep(
    manifests: Iterable[Manifest], now: datetime, days_by_kind: Mapping[str, int], min_keep: int
) -> list[Decision]:
    """decide() followed by the refusal check: the decisions a sweep may carry out."""
    decisions = decide(manifests, now, days_by_kind, min_keep)
    refuse_total_loss(decisions)
    return decisions


@dataclass(frozen=True)
class LogDecision:
    name: str
    action: str
    reason: str


def decide_run_logs(names: Iterable[str], now: datetime, days: int) -> list[LogDecision]:
    """Run log files (backup_YYYYmmdd_HHMMSS.log, stamped in now's time zone) older than
    ``days`` go; the newest one always stays. Other names are not considered at all."""
    stamped = []
    for name in names:
        match = RUN_LOG_PATTERN.match(name)
        if match:
            try:
                moment = datetime.strptime(match.group(1), "%Y%m%d_%H%M%S").replace(tzinfo=now.tzinfo)
            except ValueError:
                continue
            stamped.append((moment, name))
    stamped.sort(reverse=True)
    decisions = []
    for rank, (moment, name) in enumerate(stamped):
        age = now - moment
        if rank == 0:
            decisions.append(LogDecision(name, KEEP, "the newest run log"))
        elif age > timedelta(days=days):
            decisions.append(LogDecision(name, DELETE, f"{_days(age)} old, older than {days} days"))
        else:
            decisions.append(LogDecision(name, KEEP, f"{_days(age)} old, within {days} days"))
    return decisions


def _days(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 86400:.1f} days"
