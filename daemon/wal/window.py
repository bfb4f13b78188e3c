"""Retention as a recovery window (PITR_WINDOW_DAYS): which base backups and which archived WAL
files to delete so that every second of the last N days stays restorable, and nothing older
is kept (pure: the bases, the WAL names and ``now`` in, a plan with a reason per item out).

The rules, in order:

1. nothing is deleted while no usable base backup exists (refuse total loss): the WAL would be
   the only copy of the cluster's history, and a base taken later cannot replay it anyway, but
   a person should decide;
2. nothing is deleted while a base backup is dated in the future (daemon.clock): measured from
   a wrong clock the window would be in the wrong place;
3. a base that is unusable (its artifact missing or of another size, its manifest without a
   start position) is kept and never counted: it neither anchors the window nor is deleted
   (but it keeps its WAL, rule 5);
4. a time T is restored from the newest base that *finished* by T (wal/pitr.py's choice), so
   the window start (``now`` - N days) needs the newest base that finished at or before it: that
   base and every newer one are kept, every older one is deleted. When no base finished before
   the window start, every base is kept. The newest usable base is therefore always kept;
5. WAL is compared by segment number, whatever its timeline: every segment from the oldest kept
   base's start segment on is kept (an unusable base that is kept counts here: its WAL stays
   until a person removes its manifest) (on every timeline: recovery follows the history files to
   later ones), every older one is deleted, except one still in the spool (pg_receivewal resumes
   after the newest segment there; archiving it again on the next pass would be churn);
6. timeline history files are always kept: they are tiny, and a recovery on a later timeline
   reads every one of them.

Names that are neither a WAL segment nor a history file are not part of the plan at all.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from daemon.clock import describe_future, is_future
from daemon.manifest import Manifest
from daemon.wal.segments import Segment, history_timeline, parse_lsn, parse_segment, segment_of

KEEP = "keep"
DELETE = "delete"


@dataclass(frozen=True)
class BaseDecision:
    manifest: Manifest
    action: str  # KEEP or DELETE
    reason: str

    @property
    def delete(self) -> bool:
        return self.action == DELETE


@dataclass(frozen=True)
class WalDecision:
    name: str  # the WAL file's own name: 000000010000000000000003 or 00000002.history
    action: str
    reason: str

    @property
    def delete(self) -> bool:
        return self.action == DELETE


@dataclass(frozen=True)
class WindowPlan:
    bases: list[BaseDecision] = field(default_factory=list)  # oldest first
    wal: list[WalDecision] = field(default_factory=list)  # in name order
    refused: str | None = None  # why nothing is deleted at all
    first_kept_segment: Segment | None = None  # the oldest kept base's start: WAL from here on is kept

    @property
    def bases_deleted(self) -> list[Manifest]:
        return [decision.manifest for decision in self.bases if decision.delete]

    @property
    def wal_deleted(self) -> list[str]:
        return [decision.name for decision in self.wal if decision.delete]


def start_segment(base: Manifest) -> Segment | None:
    """The segment a base backup's recovery starts in (its start position on its timeline), or
    None when its manifest does not say."""
    try:
        return segment_of(parse_lsn(str(base.details["start_lsn"])), int(base.details["timeline"]))
    except (KeyError, TypeError, ValueError):
        return None


def finished_instant(base: Manifest) -> datetime:
    return base.finished_at.astimezone(timezone.utc)


def plan_window(bases: Iterable[Manifest], problems: Mapping[str, str], wal_names: Iterable[str],
                now: datetime, days: int, in_spool: Collection[str] = ()) -> WindowPlan:
    """The plan for the base backups ``bases`` (``problems``: why a base's file is unusable, by
    its file name), the archived WAL files ``wal_names`` and the spool's complete segments
    ``in_spool``, with a window of ``days`` ending at ``now``."""
    problems = {**problems, **{base.file: "its manifest has no start position (start_lsn, timeline)"
                               for base in bases if base.file not in problems and start_segment(base) is None}}
    ordered = sorted(bases, key=finished_instant)
    usable = [base for base in ordered if base.file not in problems]
    names = sorted(set(wal_names))
    refusal = _refusal(usable, len(ordered), now)
    if refusal is not None:
        return WindowPlan(
            [BaseDecision(base, KEEP, f"refused: {refusal}") for base in ordered],
            [WalDecision(name, KEEP, f"refused: {refusal}") for name in names if _is_wal(name)],
            refusal,
        )
    window_start = now - timedelta(days=days)
    kept = _kept_bases(usable, window_start)
    # Every base that stays pins its WAL, an unusable one too (its file may come back; verify and
    # restore still see its manifest): removing such a manifest is left to a person.
    pinning = kept + [base for base in ordered if base.file in problems and start_segment(base) is not None]
    oldest = min(pinning, key=lambda base: start_segment(base).number)
    base_decisions = [_decide_base(base, problems, kept, window_start, days) for base in ordered]
    wal_decisions = [_decide_wal(name, oldest, set(in_spool)) for name in names if _is_wal(name)]
    return WindowPlan(base_decisions, wal_decisions, None, start_segment(oldest))


def _is_wal(name: str) -> bool:
    return history_timeline(name) is not None or parse_segment(name) is not None


def _refusal(usable: list[Manifest], total: int, now: datetime) -> str | None:
    """Why nothing may be deleted (rules 1 and 2), or None."""
    if not usable:
        unusable = f" ({total} unusable)" if total else ""
        return (f"no usable base backup{unusable}: nothing of the recovery window is deleted, "
                "the archived WAL would be all there is; take a base backup with `pgbackup backup base`")
    future = [base for base in usable if is_future(base.finished_at, now)]
    if future:
        return (f"base backup {future[-1].file} finished in the future ({describe_future(future[-1].finished_at, now)}): "
                "the clock was wrong when it was taken or is wrong now; nothing of the recovery window is deleted "
                "until the clock is checked")
    return None


def _kept_bases(usable: list[Manifest], window_start: datetime) -> list[Manifest]:
    """The newest base that finished at or before ``window_start`` and every newer one; all of
    them when none finished that early. ``usable`` is ordered by finish, oldest first."""
    before = [index for index, base in enumerate(usable) if finished_instant(base) <= window_start]
    return usable[before[-1]:] if before else usable


def _decide_base(base: Manifest, problems: Mapping[str, str], kept: list[Manifest], window_start: datetime,
                 days: int) -> BaseDecision:
    if base.file in problems:
        return BaseDecision(base, KEEP, f"unusable, kept and not counted: {problems[base.file]}")
    start = window_start.isoformat(sep=" ", timespec="seconds")
    anchor = kept[0]
    if base is kept[-1]:
        return BaseDecision(base, KEEP, "the newest usable base backup, always kept")
    if base is anchor and finished_instant(base) <= window_start:
        return BaseDecision(base, KEEP, f"the newest base backup finished before the window start ({start}, "
                                        f"{days} days ago): recovery to that time starts from it")
    if base in kept:
        return BaseDecision(base, KEEP, f"finished within the {days}-day window (after {start})")
    return BaseDecision(base, DELETE, f"finished before {anchor.file}, which already covers the start of the "
                                      f"{days}-day window ({start})")


def _decide_wal(name: str, oldest: Manifest, in_spool: set[str]) -> WalDecision:
    if history_timeline(name) is not None:
        return WalDecision(name, KEEP, "a timeline history file: always kept")
    segment, first_kept = parse_segment(name), start_segment(oldest)
    if segment.number >= first_kept.number:
        return WalDecision(name, KEEP, f"needed from base backup {oldest.file} on (it starts in {first_kept.name})")
    if name in in_spool:
        return WalDecision(name, KEEP, "still in the spool, where pg_receivewal resumes after it")
    return WalDecision(name, DELETE, f"before {first_kept.name}, where the oldest kept base backup "
                                     f"{oldest.file} starts")
