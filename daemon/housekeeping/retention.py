"""The retention policy: which backups to keep and which to delete, and why.

Pure functions: the manifests and ``now`` come in, decisions go out. The rules, in order:

1. a backup marked keep_forever (pre-migration) is kept;
2. the newest RETENTION_MIN_KEEP backups of each kind and target are kept, however old;
3. a backup is deleted only when it is older than its kind's retention both by the clock
   and measured from the newest backup of its kind and target. The second condition means
   that a daemon that was down, or dumps that kept failing, never eat into the backups that
   were there: the window only moves when new backups arrive;
4. a backup that fills a GFS slot (tiers.py: RETENTION_KEEP_DAILY/WEEKLY/MONTHLY/YEARLY, the
   newest backup of each of the newest N days, ISO weeks, months, years that have one) is kept
   even past its window: a backup is kept if the window *or* any tier keeps it. Tiers only
   ever keep more; every rule here that keeps a backup or refuses to act still holds;
5. anything else (a kind without a retention rule) is kept.

Times are only trusted while they make sense; otherwise the policy refuses to act on that
kind and target (every backup of it is kept, with the refusal as its reason):

6. a backup that started more than daemon.clock.FUTURE_TOLERANCE after ``now`` means the clock was wrong
   when it was taken, or is wrong now. Measured from it, the window would expire every
   earlier backup; so nothing of its kind and target is deleted until someone looks;
7. a newest backup that started more than the window after the one before it, and more
   than JUMP_FACTOR times any earlier interval between them (a clock that jumped ahead for
   one run, or the first backup after a long outage; not a weekly job with a short window;
   judged from the third backup of a kind and target on), does not move the window on its own: if it would expire backups that the one before it
   keeps, nothing is deleted until a second backup confirms the new time.

A sweep whose decisions would delete every backup of a kind is refused as a whole.

Every decision names the rules that keep its backup (``kept_by``: forever, no rule, refused,
min-keep, window, and each GFS slot such as ``monthly 2026-10``) or, for a deletion, says why
neither the window nor any tier keeps it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import pairwise

from daemon.clock import describe_future, is_future
from daemon.errors import PgBackupError
from daemon.housekeeping.tiers import NO_TIERS, PERIOD_UNITS, Slot, TierPlan, Tiers, plan_tiers
from daemon.manifest import Manifest

KEEP = "keep"
DELETE = "delete"

RUN_LOG_PATTERN = re.compile(r"^backup_(\d{8}_\d{6})\.log$")
REFUSED_PREFIX = "refused: "
JUMP_FACTOR = 4

# What keeps a backup (Decision.kept_by), besides the GFS slots named like "monthly 2026-10".
FOREVER = "forever"
NO_RULE = "no rule"
REFUSED = "refused"
MIN_KEEP = "min-keep"
WINDOW = "window"


class RetentionRefused(PgBackupError):
    """A sweep would have deleted every backup of a kind; nothing was deleted."""


@dataclass(frozen=True)
class Rules:
    """What the policy is given: days per kind (a kind without an entry is kept), the newest
    ``min_keep`` kept however old, and the GFS tiers."""

    days_by_kind: Mapping[str, int]
    min_keep: int
    tiers: Tiers = NO_TIERS


@dataclass(frozen=True)
class Decision:
    manifest: Manifest
    action: str  # KEEP or DELETE
    reason: str
    refused: bool = False  # kept because the policy refused to act on this kind and target
    kept_by: tuple[str, ...] = ()  # every rule that keeps it, the deciding one first; empty when deleted

    @property
    def delete(self) -> bool:
        return self.action == DELETE


def group_key(manifest: Manifest) -> tuple[str, ...]:
    """The backups that retention weighs against each other: one kind and target."""
    return (manifest.kind, manifest.target)


def started_instant(manifest: Manifest) -> datetime:
    """The start in UTC: two times with the same ZoneInfo compare by wall clock, so the two 02:30s
    of the night DST ends would otherwise tie, and the newest of a day could be the wrong one."""
    return manifest.started_at.astimezone(timezone.utc)


def decide(
    manifests: Iterable[Manifest], now: datetime, days_by_kind: Mapping[str, int], min_keep: int,
    tiers: Tiers = NO_TIERS,
) -> list[Decision]:
    """A KEEP or DELETE decision with its reason for every manifest, newest first."""
    if min_keep < 1:
        raise ValueError("min_keep must be at least 1: the newest backup is never deleted")
    rules = Rules(days_by_kind, min_keep, tiers)
    groups: dict[tuple[str, ...], list[Manifest]] = defaultdict(list)
    for manifest in manifests:
        groups[group_key(manifest)].append(manifest)
    decisions: list[Decision] = []
    for group in groups.values():
        group.sort(key=started_instant, reverse=True)
        decisions.extend(_decide_group(group, now, rules))
    decisions.sort(key=lambda decision: started_instant(decision.manifest), reverse=True)
    return decisions


def refusals(decisions: Iterable[Decision]) -> dict[tuple[str, ...], str]:
    """Why the policy refused to act, by group_key (kind, target)."""
    messages: dict[tuple[str, ...], str] = {}
    for decision in decisions:
        if decision.refused:
            messages.setdefault(group_key(decision.manifest), decision.reason.removeprefix(REFUSED_PREFIX))
    return messages


def _decide_group(group: list[Manifest], now: datetime, rules: Rules) -> list[Decision]:
    """Decisions for one kind and target, ``group`` newest first."""
    refusal = _refusal(group, now, rules)
    if refusal is not None:
        return [Decision(manifest, KEEP, REFUSED_PREFIX + refusal, refused=True, kept_by=(REFUSED,))
                for manifest in group]
    return _decide_with_anchor(group, group[0].started_at, now, rules)


def _decide_with_anchor(group: list[Manifest], anchor: datetime, now: datetime, rules: Rules) -> list[Decision]:
    """The decisions when the window is measured back from ``anchor`` (normally the newest backup)."""
    tier_plan = plan_tiers((manifest for manifest in group if not manifest.keep_forever), rules.tiers)
    return [_decide_one(manifest, rank, anchor, now, rules, tier_plan) for rank, manifest in enumerate(group)]


def _refusal(group: list[Manifest], now: datetime, rules: Rules) -> str | None:
    """Why the times of ``group`` cannot be trusted to delete anything (rules 6 and 7), or None."""
    kind, target = group[0].kind, group[0].target
    days = rules.days_by_kind.get(kind)
    if days is None:
        return None  # nothing of this kind is deleted anyway
    future = [manifest for manifest in group if is_future(manifest.started_at, now)]
    if future:
        ahead = future[0]
        return (
            f"{len(future)} {kind} backup(s) of {target} started in the future (the newest, {ahead.file}, at "
            f"{describe_future(ahead.started_at, now)}): "
            f"the clock was wrong when it was taken or is wrong now; nothing of {kind} {target} is deleted "
            "until the clock is checked and the future-dated backup is moved out of the backup directory"
        )
    if len(group) < 3:
        return None  # no earlier interval to tell a jump from the usual spacing
    jump = group[0].started_at - group[1].started_at
    earlier_gaps = [later.started_at - earlier.started_at for later, earlier in pairwise(group[1:])]
    if jump <= timedelta(days=days) or any(jump <= JUMP_FACTOR * gap for gap in earlier_gaps):
        return None
    with_jump = {d.manifest.file for d in _decide_with_anchor(group, group[0].started_at, now, rules) if d.delete}
    without = {d.manifest.file for d in _decide_with_anchor(group, group[1].started_at, now, rules) if d.delete}
    if with_jump <= without:
        return None
    return (
        f"the newest {kind} backup of {target} ({group[0].file}) started {_days(jump)} after the one before it, "
        f"more than the {days}-day window: a clock that jumped ahead, or the first backup after a long outage; "
        f"it would expire {len(with_jump - without)} backup(s) on its own, so nothing of {kind} {target} is "
        "deleted until a second backup confirms the new time"
    )


def _decide_one(
    manifest: Manifest, rank: int, newest: datetime, now: datetime, rules: Rules, tier_plan: TierPlan
) -> Decision:
    if manifest.keep_forever:
        return Decision(manifest, KEEP, "kept forever (keep_forever)", kept_by=(FOREVER,))
    days = rules.days_by_kind.get(manifest.kind)
    if days is None:
        return Decision(manifest, KEEP, f"no retention rule for kind {manifest.kind}", kept_by=(NO_RULE,))
    slots = tier_plan.slots_of(manifest)
    kept = _kept_by_rank_or_window(manifest, rank, newest, now, days, rules.min_keep)
    if kept is not None:
        rule, reason = kept
        also = f"; also {_names(slots)}" if slots else ""
        return Decision(manifest, KEEP, reason + also, kept_by=(rule, *map(str, slots)))
    age = _days(now - manifest.started_at)
    if slots:
        return Decision(manifest, KEEP, f"{_names(slots)}: the newest backup of {_periods(slots)}; "
                                        f"{age} old, past the {days}-day window",
                        kept_by=tuple(map(str, slots)))
    misses = tier_plan.misses_of(manifest)
    return Decision(manifest, DELETE, f"{age} old, older than {days} days" + (
        f", and no tier keeps it ({'; '.join(misses)})" if misses else ""))


def _kept_by_rank_or_window(
    manifest: Manifest, rank: int, newest: datetime, now: datetime, days: int, min_keep: int
) -> tuple[str, str] | None:
    """(rule, reason) when RETENTION_MIN_KEEP or the day window keeps ``manifest``, else None."""
    if rank < min_keep:
        if min_keep == 1:
            return MIN_KEEP, f"the newest {manifest.kind} backup of {manifest.target}, kept however old"
        return MIN_KEEP, (f"among the newest {min_keep} {manifest.kind} backups of {manifest.target} "
                          "(RETENTION_MIN_KEEP)")
    age = now - manifest.started_at
    behind_newest = newest - manifest.started_at
    limit = timedelta(days=days)
    if age <= limit:
        return WINDOW, f"{_days(age)} old, within {days} days"
    if behind_newest <= limit:
        return WINDOW, (f"{_days(age)} old, but only {_days(behind_newest)} older than the newest "
                        f"{manifest.kind} {manifest.target} (no newer backups to replace it)")
    return None


def _names(slots: tuple[Slot, ...]) -> str:
    return ", ".join(map(str, slots))


def _periods(slots: tuple[Slot, ...]) -> str:
    """'its day and its month' for the slots of one backup."""
    return " and ".join(f"its {PERIOD_UNITS[slot.tier]}" for slot in slots)


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
    manifests: Iterable[Manifest], now: datetime, days_by_kind: Mapping[str, int], min_keep: int,
    tiers: Tiers = NO_TIERS,
) -> list[Decision]:
    """decide() followed by the refusal check: the decisions a sweep may carry out."""
    decisions = decide(manifests, now, days_by_kind, min_keep, tiers)
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
