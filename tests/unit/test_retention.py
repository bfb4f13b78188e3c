"""The retention policy as a pure function: manifests and `now` in, decisions out."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.housekeeping.retention import (
    DELETE,
    KEEP,
    Decision,
    RetentionRefused,
    decide,
    decide_run_logs,
    plan_sweep,
    refuse_total_loss,
)
from daemon.manifest import Manifest

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=ZoneInfo("UTC"))
DAYS = {"full": 30, "database": 14, "table": 14, "volume": 28}


def backup(days_ago: float, kind: str = "full", target: str = "all", keep_forever: bool = False) -> Manifest:
    started = NOW - timedelta(days=days_ago)
    return Manifest(kind=kind, target=target, file=f"{kind}_{target}_{days_ago}", size_bytes=10, sha256="ab",
                    started_at=started, finished_at=started + timedelta(seconds=5), server_version="15.8",
                    format="plain", compression="gzip", keep_forever=keep_forever)


def daily(first_day_ago: int, last_day_ago: int, kind: str = "full", target: str = "all") -> list[Manifest]:
    return [backup(day, kind, target) for day in range(last_day_ago, first_day_ago + 1)]


def deleted_ages(decisions: list[Decision]) -> list[float]:
    return sorted(round((NOW - d.manifest.started_at).total_seconds() / 86400) for d in decisions if d.delete)


# (scenario, manifests, min_keep, ages in days that are deleted)
SCENARIOS = [
    ("steady daily backups: the ones past 30 days go",
     daily(40, 0), 1, list(range(31, 41))),
    ("the daemon was down 40 days: nothing is deleted",
     daily(70, 40), 1, []),
    ("down 40 days after 60 days of backups: only what was already due goes",
     daily(100, 40), 1, list(range(71, 101))),
    ("every dump failed for a week: the last good one survives",
     daily(37, 7), 1, []),
    ("a single ancient backup is the newest of its kind and stays",
     [backup(400)], 1, []),
    ("min keep 3 keeps the three newest even when all are old",
     [backup(300), backup(200), backup(100), backup(150)], 3, [300]),
    ("database backups follow their own 14 days, per target",
     daily(20, 0, "database", "authdb") + [backup(60, "database", "apidb")], 1, list(range(15, 21))),
    ("pre-migration backups are kept forever",
     [backup(900, "pre_migration", keep_forever=True), backup(0, "pre_migration", keep_forever=True)], 1, []),
    ("a kind without a rule is kept",
     [backup(500, "mystery"), backup(1, "mystery")], 1, []),
]


class TestRetentionPolicy:
    @pytest.mark.parametrize(("scenario", "manifests", "min_keep", "expected"), SCENARIOS,
                             ids=[scenario[0] for scenario in SCENARIOS])
    def test_scenarios(self, scenario, manifests, min_keep, expected):
        """Each scenario deletes exactly the backups that are older than their kind's window."""
        decisions = plan_sweep(manifests, NOW, DAYS, min_keep)
        assert deleted_ages(decisions) == expected
        assert len(decisions) == len(manifests)

    def test_every_decision_has_a_reason(self):
        """Every decision, kept or deleted, says why in words."""
        decisions = decide(daily(40, 0), NOW, DAYS, 1)
        assert {d.action for d in decisions} == {KEEP, DELETE}
        assert all(d.reason for d in decisions)
        oldest = decisions[-1]
        assert oldest.delete and "older than 30 days" in oldest.reason

    def test_keep_forever_wins_over_age_and_rank(self):
        """A keep_forever backup is kept even when it is old and not among the newest."""
        manifests = [backup(1), backup(500, keep_forever=True)]
        decisions = decide(manifests, NOW, DAYS, 1)
        assert [d.action for d in decisions] == [KEEP, KEEP]
        assert "forever" in decisions[1].reason

    def test_newest_is_kept_per_kind_and_target(self):
        """The newest backup of every kind and target survives however old it is."""
        manifests = [backup(100, "database", "authdb"), backup(100, "database", "apidb"), backup(0, "full")]
        assert all(d.action == KEEP for d in decide(manifests, NOW, DAYS, 1))

    def test_future_backup_is_kept(self):
        """A backup stamped after now (a clock step) is never deleted."""
        assert decide([backup(-3), backup(0)], NOW, DAYS, 1)[0].action == KEEP

    def test_min_keep_below_one_is_rejected(self):
        """min_keep 0 would allow deleting the newest backup, so it is refused."""
        with pytest.raises(ValueError):
            decide([backup(1)], NOW, DAYS, 0)

    def test_only_the_given_manifests_are_considered(self):
        """The policy decides about the manifests it is given and nothing else (foreign files never reach it)."""
        manifests = daily(40, 0)
        assert {d.manifest.file for d in decide(manifests, NOW, DAYS, 1)} == {m.file for m in manifests}


class TestRefusal:
    def test_refuses_to_delete_every_backup_of_a_kind(self):
        """Decisions that would delete every backup of a kind raise, naming the kind."""
        decisions = [Decision(backup(40), DELETE, "old"), Decision(backup(50), DELETE, "old"),
                     Decision(backup(1, "database", "authdb"), KEEP, "new")]
        with pytest.raises(RetentionRefused, match="kind full"):
            refuse_total_loss(decisions)

    def test_allows_a_sweep_that_leaves_one(self):
        """One kept backup of the kind is enough for the sweep to go ahead."""
        refuse_total_loss([Decision(backup(40), DELETE, "old"), Decision(backup(1), KEEP, "new")])


class TestRunLogs:
    def test_old_run_logs_go_and_the_newest_stays(self):
        """Run logs older than the window are deleted, the newest is kept, other names are ignored."""
        names = ["backup_20261126_030000.log", "backup_20260901_030000.log", "backup_20260101_030000.log",
                 "notes.log", "backup_all_20260101_030000.sql.gz"]
        decisions = {d.name: d.action for d in decide_run_logs(names, NOW, 90)}
        assert decisions == {"backup_20261126_030000.log": KEEP, "backup_20260901_030000.log": KEEP,
                             "backup_20260101_030000.log": DELETE}

    def test_a_lone_old_run_log_stays(self):
        """The newest run log is kept even when it is older than the window."""
        assert [d.action for d in decide_run_logs(["backup_20200101_000000.log"], NOW, 90)] == [KEEP]
