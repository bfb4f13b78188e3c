"""GFS tiers (grandfather-father-son): which backups of one kind and target fill a slot.

The same rule as restic's ``--keep-daily/--keep-weekly/--keep-monthly/--keep-yearly``: a tier
of N keeps the newest backup of each of the N newest periods (local days, ISO weeks, months,
years in the configured zone) that have a backup. Periods without a backup are not counted, so
a month in which every dump failed does not use up a place. A tier of 0 is off.

Pure functions: the backups of one group (newest first) and the tiers in, the slots out. They
only ever add reasons to keep a backup; retention.py decides what goes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from functools import cached_property

from daemon.manifest import Manifest

DAILY = "daily"
WEEKLY = "weekly"
MONTHLY = "monthly"
YEARLY = "yearly"
TIER_NAMES = (DAILY, WEEKLY, MONTHLY, YEARLY)
PERIOD_UNITS = {DAILY: "day", WEEKLY: "ISO week", MONTHLY: "month", YEARLY: "year"}


@dataclass(frozen=True)
class Tiers:
    """How many periods each tier keeps (0: off), and the zone whose calendar periods follow."""

    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    zone: tzinfo = timezone.utc

    def counts(self) -> list[tuple[str, int]]:
        """The tiers that are on, with their counts, daily first."""
        return [(name, getattr(self, name)) for name in TIER_NAMES if getattr(self, name) > 0]


NO_TIERS = Tiers()


@dataclass(frozen=True)
class Slot:
    """A period of a tier that a backup keeps, e.g. ``monthly 2026-10``."""

    tier: str
    period: str

    def __str__(self) -> str:
        return f"{self.tier} {self.period}"


def period_of(tier: str, moment: datetime, zone: tzinfo) -> str:
    """The period of ``tier`` that ``moment`` falls in, on the calendar of ``zone``."""
    local = moment.astimezone(zone)
    if tier == DAILY:
        return local.date().isoformat()
    if tier == WEEKLY:
        iso = local.isocalendar()  # the ISO year: 2027-01-01 is in 2026-W53
        return f"{iso.year:04d}-W{iso.week:02d}"
    if tier == MONTHLY:
        return f"{local.year:04d}-{local.month:02d}"
    if tier == YEARLY:
        return f"{local.year:04d}"
    raise ValueError(f"unknown tier {tier!r}; known: {', '.join(TIER_NAMES)}")


@dataclass
class TierPlan:
    """For one kind and target: which backup fills each kept period of each tier."""

    tiers: Tiers
    filled: dict[str, dict[str, str]] = field(default_factory=dict)  # tier -> period -> file

    @cached_property
    def _slots_by_file(self) -> dict[str, tuple[Slot, ...]]:
        by_file: dict[str, list[Slot]] = {}
        for tier, periods in self.filled.items():
            for period, file in periods.items():
                by_file.setdefault(file, []).append(Slot(tier, period))
        return {file: tuple(slots) for file, slots in by_file.items()}

    def slots_of(self, manifest: Manifest) -> tuple[Slot, ...]:
        """The slots ``manifest`` fills, daily first."""
        return self._slots_by_file.get(manifest.file, ())

    def misses_of(self, manifest: Manifest) -> list[str]:
        """Why ``manifest`` fills no slot, one phrase per tier that is on."""
        misses = []
        for tier, count in self.tiers.counts():
            period = period_of(tier, manifest.started_at, self.tiers.zone)
            if period in self.filled[tier]:
                misses.append(f"{tier} {period} is kept by a newer backup")
            else:
                misses.append(f"{tier} {period} is older than the {count} newest {PERIOD_UNITS[tier]}s with backups")
        return misses


def plan_tiers(group: Iterable[Manifest], tiers: Tiers) -> TierPlan:
    """The slots of one kind and target; ``group`` newest first, only backups that may fill a slot."""
    newest_first = list(group)
    filled = {tier: _fill(newest_first, tier, count, tiers.zone) for tier, count in tiers.counts()}
    return TierPlan(tiers, filled)


def _fill(newest_first: list[Manifest], tier: str, count: int, zone: tzinfo) -> dict[str, str]:
    """The newest backup of each of the ``count`` newest periods that have one.

    A set of periods rather than restic's comparison with the previous one: the same result
    while local dates only move forward, and still one place per period should a zone ever set
    its clocks back across midnight (a later backup on an earlier local date).
    """
    filled: dict[str, str] = {}
    for manifest in newest_first:
        if len(filled) == count:
            break
        filled.setdefault(period_of(tier, manifest.started_at, zone), manifest.file)
    return filled
