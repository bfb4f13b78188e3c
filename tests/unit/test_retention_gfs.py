"""GFS tiers (RETENTION_KEEP_DAILY/WEEKLY/MONTHLY/YEARLY) as pure functions, over generated calendars.

Calendars run across month ends, Feb 29, the ISO week 53 of 2026 that ends in 2027, and the
DST days of Europe/Berlin. Each is checked against a hand-written expectation or against
restic's own bucket algorithm (``restic_keep`` below, written after restic's forget policy).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.errors import SettingsError
from daemon.housekeeping.prune import local_tiers, offsite_tiers
from daemon.housekeeping.retention import (
    DELETE,
    FOREVER,
    KEEP,
    MIN_KEEP,
    REFUSED,
    WINDOW,
    decide,
    plan_sweep,
    started_instant,
)
from daemon.housekeeping.tiers import NO_TIERS, TIER_NAMES, Tiers, period_of, plan_tiers
from daemon.manifest import Manifest
from daemon.settings import Settings, environment_variable_names, load_settings

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")
DAYS = {"full": 30, "database": 14, "table": 14, "volume": 28}


def backup(started: datetime, kind: str = "full", target: str = "all", keep_forever: bool = False) -> Manifest:
    stamp = started.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    return Manifest(kind=kind, target=target, file=f"{kind}_{target}_{stamp}", size_bytes=10, sha256="ab",
                    started_at=started, finished_at=started + timedelta(seconds=5), server_version="15.8",
                    format="plain", compression="gzip", keep_forever=keep_forever)


def berlin(*fields: int, fold: int = 0) -> datetime:
    return datetime(*fields, tzinfo=BERLIN, fold=fold)


def newest_first(manifests: list[Manifest]) -> list[Manifest]:
    return sorted(manifests, key=started_instant, reverse=True)


def slots_by_file(manifests: list[Manifest], tiers: Tiers) -> dict[str, list[str]]:
    plan = plan_tiers(newest_first(manifests), tiers)
    return {m.file: [str(slot) for slot in plan.slots_of(m)] for m in manifests if plan.slots_of(m)}


def restic_keep(manifests: list[Manifest], tiers: Tiers) -> dict[str, list[str]]:
    """restic's forget policy (internal/restic/snapshot_policy.go, ApplyPolicy): walk the snapshots
    newest first; a bucket with count left keeps a snapshot whose period differs from the last one
    it kept, and counts down. Periods here are restic's bucket values as text."""
    left = dict(tiers.counts())
    last: dict[str, str | None] = dict.fromkeys(left)
    kept: dict[str, list[str]] = {}
    for manifest in newest_first(manifests):
        for tier in left:
            value = period_of(tier, manifest.started_at, tiers.zone)
            if left[tier] > 0 and value != last[tier]:
                last[tier] = value
                left[tier] -= 1
                kept.setdefault(manifest.file, []).append(f"{tier} {value}")
    return kept


def every(start: datetime, end: datetime, step: timedelta) -> list[Manifest]:
    """A backup every ``step`` from ``start`` up to ``end``, in absolute time."""
    manifests, moment = [], start
    while moment <= end:
        manifests.append(backup(moment))
        moment += step
    return manifests


def daily_local(first: datetime, days: int, hour: int = 3) -> list[Manifest]:
    """One backup a day at ``hour`` o'clock Berlin time (a wall-clock schedule, as cron runs it)."""
    return [backup(datetime.combine((first + timedelta(days=n)).date(), datetime.min.time(), BERLIN)
                   .replace(hour=hour)) for n in range(days)]


def irregular(seed: int, start: datetime, count: int) -> list[Manifest]:
    """Backups 20 minutes to 4 days apart, with an occasional outage of weeks."""
    rng = random.Random(seed)
    manifests, moment = [], start
    for _ in range(count):
        moment += timedelta(minutes=rng.randint(20, 4 * 24 * 60))
        if rng.random() < 0.02:
            moment += timedelta(days=rng.randint(20, 90))
        manifests.append(backup(moment))
    return manifests


class TestPeriods:
    @pytest.mark.parametrize(("moment", "tier", "period"), [
        (berlin(2028, 2, 29, 3), "daily", "2028-02-29"),
        (berlin(2028, 2, 29, 3), "monthly", "2028-02"),
        (berlin(2026, 12, 31, 3), "weekly", "2026-W53"),
        (berlin(2027, 1, 1, 3), "weekly", "2026-W53"),
        (berlin(2027, 1, 3, 23, 59), "weekly", "2026-W53"),
        (berlin(2027, 1, 4, 0, 1), "weekly", "2027-W01"),
        (berlin(2027, 1, 1, 3), "yearly", "2027"),
        (berlin(2027, 12, 31, 3), "weekly", "2027-W52"),
        (datetime(2026, 10, 31, 23, 30, tzinfo=UTC), "monthly", "2026-11"),  # 00:30 on Nov 1 in Berlin
        (datetime(2026, 10, 31, 23, 30, tzinfo=UTC), "daily", "2026-11-01"),
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "yearly", "2027"),
        (berlin(2026, 10, 25, 2, 30, fold=1), "daily", "2026-10-25"),  # the second 02:30 of the DST end
    ])
    def test_period_is_the_local_calendar_of_the_zone(self, moment, tier, period):
        """A backup's day, ISO week (ISO year), month and year are those of TZ, not of UTC."""
        assert period_of(tier, moment, BERLIN) == period

    def test_the_same_moment_is_another_month_in_utc(self):
        """The zone decides: 23:30 UTC on Oct 31 is still October in UTC."""
        assert period_of("monthly", datetime(2026, 10, 31, 23, 30, tzinfo=UTC), UTC) == "2026-10"


# A hand-checked calendar (Berlin time). Wed 2028-03-01 is in 2028-W09 with Feb 28 and 29,
# Sun Feb 27 in W08, Mon Jan 31 in W05, Sat Jan 15 in W02, Fri 2027-12-31 in 2027-W52, and
# Thu 2026-12-31 and Fri 2027-01-01 both in 2026-W53.
HAND = {
    "mar01": berlin(2028, 3, 1, 3),
    "feb29": berlin(2028, 2, 29, 3),
    "feb29_early": berlin(2028, 2, 29, 1),
    "feb28": berlin(2028, 2, 28, 3),
    "feb27": berlin(2028, 2, 27, 3),
    "jan31_late": berlin(2028, 1, 31, 23, 30),
    "jan15": berlin(2028, 1, 15, 3),
    "dec31_2027": berlin(2027, 12, 31, 3),
    "jan01_2027": berlin(2027, 1, 1, 3),
    "dec31_2026": berlin(2026, 12, 31, 3),
    "oct25_cet": berlin(2026, 10, 25, 2, 30, fold=1),
    "oct25_cest": berlin(2026, 10, 25, 2, 30, fold=0),
    "mar29_2026": berlin(2026, 3, 29, 3, 30),
}
HAND_EXPECTED = [
    (Tiers(daily=3, weekly=3, monthly=4, yearly=3, zone=BERLIN), {
        "mar01": ["daily 2028-03-01", "weekly 2028-W09", "monthly 2028-03", "yearly 2028"],
        "feb29": ["daily 2028-02-29", "monthly 2028-02"],
        "feb28": ["daily 2028-02-28"],
        "feb27": ["weekly 2028-W08"],
        "jan31_late": ["weekly 2028-W05", "monthly 2028-01"],
        "dec31_2027": ["monthly 2027-12", "yearly 2027"],
        "dec31_2026": ["yearly 2026"],
    }),
    (Tiers(weekly=7, zone=BERLIN), {
        "mar01": ["weekly 2028-W09"], "feb27": ["weekly 2028-W08"], "jan31_late": ["weekly 2028-W05"],
        "jan15": ["weekly 2028-W02"], "dec31_2027": ["weekly 2027-W52"], "jan01_2027": ["weekly 2026-W53"],
        "oct25_cet": ["weekly 2026-W43"],
    }),
    (Tiers(monthly=100, zone=BERLIN), {
        "mar01": ["monthly 2028-03"], "feb29": ["monthly 2028-02"], "jan31_late": ["monthly 2028-01"],
        "dec31_2027": ["monthly 2027-12"], "jan01_2027": ["monthly 2027-01"], "dec31_2026": ["monthly 2026-12"],
        "oct25_cet": ["monthly 2026-10"], "mar29_2026": ["monthly 2026-03"],
    }),
    (Tiers(daily=1, yearly=1, zone=UTC), {  # in UTC Jan 31 23:30 Berlin is still Jan 31
        "mar01": ["daily 2028-03-01", "yearly 2028"],
    }),
]


class TestHandCheckedCalendar:
    @pytest.mark.parametrize(("tiers", "expected"), HAND_EXPECTED, ids=["gfs", "weekly-across-w53", "monthly-all",
                                                                        "utc"])
    def test_slots_match_the_hand_checked_expectation(self, tiers, expected):
        """Each tier keeps the newest backup of each of its N newest periods that have a backup."""
        manifests = {name: backup(moment) for name, moment in HAND.items()}
        by_name = {m.file: name for name, m in manifests.items()}
        got = {by_name[file]: slots for file, slots in slots_by_file(list(manifests.values()), tiers).items()}
        assert got == expected

    def test_the_later_of_the_two_same_wall_clock_times_fills_the_dst_day(self):
        """On the day DST ends, 02:30 happens twice; the later one in real time (CET) is the day's newest."""
        first, second = backup(HAND["oct25_cest"]), backup(HAND["oct25_cet"])
        assert second.started_at.astimezone(UTC) - first.started_at.astimezone(UTC) == timedelta(hours=1)
        assert slots_by_file([first, second], Tiers(daily=5, zone=BERLIN)) == {second.file: ["daily 2026-10-25"]}


CALENDARS = {
    # daily at 03:00 local through two DST changes a year, Feb 29 2028 and the 2026-W53 boundary
    "daily-03:00": daily_local(berlin(2025, 11, 20), 900),
    # at 00:30 local, so a UTC-minded policy would put them on the day before
    "daily-00:30": daily_local(berlin(2026, 1, 1), 800, hour=0),
    "every-7h": every(berlin(2026, 3, 1), berlin(2028, 4, 1), timedelta(hours=7)),
    "hourly-dst-end": every(berlin(2026, 10, 23), berlin(2026, 10, 27), timedelta(minutes=30)),
    "hourly-dst-start": every(berlin(2026, 3, 27), berlin(2026, 3, 31), timedelta(minutes=30)),
    "month-ends": [backup(berlin(y, m, 1, 0, 5)) for y in (2026, 2027, 2028) for m in range(1, 13)]
                  + [backup(berlin(y, m, 1, 0, 5) - timedelta(minutes=10)) for y in (2026, 2027, 2028)
                     for m in range(1, 13)],
    "irregular-1": irregular(1, berlin(2025, 12, 20), 400),
    "irregular-2": irregular(2, berlin(2026, 12, 1), 300),
}
TIER_SETS = [Tiers(daily=7, weekly=4, monthly=12, yearly=3, zone=BERLIN), Tiers(daily=40, zone=BERLIN),
             Tiers(weekly=60, zone=BERLIN), Tiers(monthly=30, yearly=10, zone=BERLIN),
             Tiers(daily=2, weekly=2, monthly=2, yearly=2, zone=UTC)]


class TestGeneratedCalendars:
    @pytest.mark.parametrize("name", sorted(CALENDARS))
    @pytest.mark.parametrize("tiers", TIER_SETS, ids=["7-4-12-3", "daily-40", "weekly-60", "monthly-yearly", "utc"])
    def test_slots_equal_restics_policy(self, name, tiers):
        """On every generated calendar, the kept backups and their periods are the ones restic would keep."""
        manifests = CALENDARS[name]
        assert slots_by_file(manifests, tiers) == restic_keep(manifests, tiers)

    @pytest.mark.parametrize("name", sorted(CALENDARS))
    def test_each_tier_fills_n_distinct_periods_with_their_newest_backup(self, name):
        """A tier keeps min(N, periods with backups) backups, each the newest of a distinct period."""
        manifests = CALENDARS[name]
        tiers = Tiers(daily=10, weekly=10, monthly=10, yearly=10, zone=BERLIN)
        plan = plan_tiers(newest_first(manifests), tiers)
        for tier in TIER_NAMES:
            periods = {period_of(tier, m.started_at, BERLIN) for m in manifests}
            assert len(plan.filled[tier]) == min(10, len(periods))
            for period, file in plan.filled[tier].items():
                same = [m for m in manifests if period_of(tier, m.started_at, BERLIN) == period]
                assert max(same, key=lambda m: m.started_at).file == file

    @pytest.mark.parametrize("name", sorted(CALENDARS))
    def test_tiers_only_ever_keep_more(self, name):
        """Whatever the tiers, every backup the day window alone keeps is still kept."""
        manifests = CALENDARS[name]
        now = max(m.started_at for m in manifests) + timedelta(hours=1)
        window_only = {d.manifest.file for d in decide(manifests, now, {"full": 5}, 1) if d.delete}
        with_tiers = {d.manifest.file for d in decide(manifests, now, {"full": 5}, 1, TIER_SETS[0]) if d.delete}
        assert with_tiers <= window_only


def decisions_by_file(manifests: list[Manifest], now: datetime, tiers: Tiers, min_keep: int = 1,
                      days: dict[str, int] = DAYS) -> dict[str, object]:
    return {d.manifest.file: d for d in plan_sweep(manifests, now, days, min_keep, tiers)}


NOW = berlin(2026, 12, 5, 6)
A_YEAR = daily_local(berlin(2025, 12, 1), 369)  # 2025-12-01 .. 2026-12-04, one each day at 03:00


class TestDecisions:
    def test_window_or_tier_keeps_a_backup(self):
        """With a 30-day window and 12 monthly slots, the last 30 days stay and the newest backup of each of
        the 12 newest months; everything else goes."""
        decisions = decisions_by_file(A_YEAR, NOW, Tiers(monthly=12, zone=BERLIN))
        kept = sorted(d.manifest.started_at.date().isoformat() for d in decisions.values() if not d.delete)
        month_ends = [f"2026-{month:02d}-{day}" for month, day in
                      ((1, 31), (2, 28), (3, 31), (4, 30), (5, 31), (6, 30), (7, 31), (8, 31), (9, 30), (10, 31))]
        # the window reaches 30 days back from the newest backup (Dec 4): Nov 4 .. Dec 4
        in_window = [(berlin(2026, 12, 4) - timedelta(days=n)).date().isoformat() for n in range(30, -1, -1)]
        assert kept == month_ends + in_window  # 2025-12-31 is the 13th month: gone

    def test_a_tier_kept_backup_names_its_slot(self):
        """A backup past its window that a tier keeps says which one: 'monthly 2026-10'."""
        decisions = decisions_by_file(A_YEAR, NOW, Tiers(monthly=12, zone=BERLIN))
        october = next(d for d in decisions.values() if d.manifest.started_at == berlin(2026, 10, 31, 3))
        assert october.action == KEEP and october.kept_by == ("monthly 2026-10",)
        assert october.reason.startswith("monthly 2026-10: the newest backup of its month;")
        assert "past the 30-day window" in october.reason

    def test_a_backup_in_the_window_also_names_its_slots(self):
        """The window keeps recent backups first; the slots they fill are named after it."""
        decisions = decisions_by_file(A_YEAR, NOW, Tiers(daily=3, weekly=2, zone=BERLIN))
        newest = decisions[A_YEAR[-1].file]
        assert newest.kept_by == (MIN_KEEP, "daily 2026-12-04", "weekly 2026-W49")
        second = decisions[A_YEAR[-2].file]
        assert second.kept_by == (WINDOW, "daily 2026-12-03") and "also daily 2026-12-03" in second.reason

    def test_a_deleted_backup_says_why_no_tier_keeps_it(self):
        """A deletion names, per tier, whether a newer backup holds its period or the period is too old."""
        decisions = decisions_by_file(A_YEAR, NOW, Tiers(weekly=4, monthly=12, zone=BERLIN))
        gone = next(d for d in decisions.values() if d.manifest.started_at == berlin(2026, 10, 30, 3))
        assert gone.action == DELETE and gone.kept_by == ()
        assert "older than 30 days" in gone.reason
        assert "weekly 2026-W44 is older than the 4 newest ISO weeks with backups" in gone.reason
        assert "monthly 2026-10 is kept by a newer backup" in gone.reason

    def test_unset_tiers_change_nothing(self):
        """Without tiers (or all 0), every decision is the day window's, word for word."""
        window = decide(A_YEAR, NOW, DAYS, 1)
        assert [(d.action, d.reason) for d in decide(A_YEAR, NOW, DAYS, 1, Tiers(zone=BERLIN))] == \
            [(d.action, d.reason) for d in window]
        assert all(d.kept_by in ((MIN_KEEP,), (WINDOW,), ()) for d in window)
        assert NO_TIERS.counts() == []

    def test_min_keep_and_tiers_together(self):
        """RETENTION_MIN_KEEP still keeps the newest N however old; tiers add to them."""
        old = [backup(berlin(2025, month, 15, 3)) for month in range(1, 13)]
        decisions = decisions_by_file(old, NOW, Tiers(yearly=1, zone=BERLIN), min_keep=3)
        kept = {d.manifest.started_at.month: d.kept_by for d in decisions.values() if not d.delete}
        assert kept == {12: (MIN_KEEP, "yearly 2025"), 11: (MIN_KEEP,), 10: (MIN_KEEP,)}

    def test_pre_migration_backups_stay_forever_and_fill_no_slot(self):
        """pre_migration has no window and no tiers: every one is kept forever, however many tiers are set."""
        manifests = [backup(berlin(2020 + n, 1, 1, 3), "pre_migration", keep_forever=True) for n in range(6)]
        decisions = decide(manifests, NOW, DAYS, 1, Tiers(yearly=1, zone=BERLIN))
        assert all(d.action == KEEP and d.kept_by == (FOREVER,) for d in decisions)

    def test_keep_forever_backups_do_not_use_up_a_slot(self):
        """A keep_forever backup in a group is kept anyway; the month's slot goes to its newest other backup."""
        forever = backup(berlin(2026, 6, 30, 3), keep_forever=True)
        ordinary = backup(berlin(2026, 6, 20, 3))
        decisions = decisions_by_file([forever, ordinary, A_YEAR[-1]], NOW, Tiers(monthly=12, zone=BERLIN))
        assert decisions[forever.file].kept_by == (FOREVER,)
        assert decisions[ordinary.file].kept_by == ("monthly 2026-06",)

    def test_tiers_are_per_kind_and_target(self):
        """Each kind and target fills its own slots."""
        authdb = [backup(berlin(2026, 9, 30, 4), "database", "authdb"), backup(berlin(2026, 12, 4, 4), "database",
                                                                                   "authdb")]
        apidb = [backup(berlin(2026, 9, 29, 4), "database", "apidb"), backup(berlin(2026, 12, 4, 4), "database",
                                                                                 "apidb")]
        decisions = decisions_by_file(authdb + apidb, NOW, Tiers(monthly=2, zone=BERLIN))
        assert decisions[authdb[0].file].kept_by == decisions[apidb[0].file].kept_by == ("monthly 2026-09",)

    def test_a_future_dated_backup_still_refuses_the_whole_group(self):
        """Tiers never override a refusal: with a backup dated a year ahead, nothing of the group is deleted."""
        ahead = backup(NOW + timedelta(days=365))
        decisions = decide([*A_YEAR, ahead], NOW, DAYS, 1, Tiers(daily=1, zone=BERLIN))
        assert all(d.action == KEEP and d.refused and d.kept_by == (REFUSED,) for d in decisions)

    def test_a_clock_jump_is_still_refused(self):
        """A newest backup far ahead of the usual spacing still stops the sweep until a second one confirms it."""
        week = [backup(NOW - timedelta(days=40, hours=12 * step)) for step in range(14)]
        jumped = backup(NOW)
        decisions = decide([*week, jumped], NOW, {"full": 7}, 1, Tiers(daily=2, zone=BERLIN))
        assert all(d.action == KEEP and d.refused for d in decisions)
        assert "jumped ahead" in decisions[0].reason


class TestSettings:
    @pytest.fixture(autouse=True)
    def clean_environment(self, monkeypatch):
        for name in environment_variable_names():
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("POSTGRES_CONTAINER", "pg")

    def test_unset_means_no_tiers(self):
        """By default neither BACKUP_DIR nor S3 has tiers: the day windows alone decide."""
        settings = load_settings()
        assert local_tiers(settings).counts() == [] and offsite_tiers(settings).counts() == []

    def test_local_and_s3_tiers_are_separate_and_in_tz(self, monkeypatch):
        """RETENTION_KEEP_* apply to BACKUP_DIR, S3_RETENTION_KEEP_* to S3, both on TZ's calendar."""
        for name, value in {"TZ": "Europe/Berlin", "RETENTION_KEEP_DAILY": "7", "RETENTION_KEEP_MONTHLY": "12",
                            "S3_RETENTION_KEEP_YEARLY": "5", "S3_RETENTION_KEEP_WEEKLY": "0"}.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        assert local_tiers(settings) == Tiers(daily=7, monthly=12, zone=BERLIN)
        assert offsite_tiers(settings) == Tiers(yearly=5, zone=BERLIN)

    @pytest.mark.parametrize(("variable", "value", "message"), [
        ("RETENTION_KEEP_DAILY", "-1", "greater than or equal to 0"),
        ("RETENTION_KEEP_WEEKLY", "10001", "less than or equal to 10000"),
        ("RETENTION_KEEP_MONTHLY", "twelve", "valid integer"),
        ("RETENTION_KEEP_YEARLY", "1.5", "valid integer"),
        ("S3_RETENTION_KEEP_MONTHLY", "-3", "greater than or equal to 0"),
        ("S3_RETENTION_KEEP_DAILY", "1e9", "valid integer"),
    ])
    def test_bad_values_name_the_variable(self, monkeypatch, variable, value, message):
        """A negative, huge or non-integer count stops start-up with a line naming the variable and the bound."""
        monkeypatch.setenv(variable, value)
        with pytest.raises(SettingsError) as caught:
            load_settings()
        (line,) = caught.value.problems
        assert line.startswith(f"{variable}: ") and message in line and value not in line.split(": ", 1)[1]

    def test_the_bound_itself_is_allowed(self):
        """10000 periods is accepted."""
        assert Settings(postgres_container="pg", retention_keep_daily=10000).retention_keep_daily == 10000
