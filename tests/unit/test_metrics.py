"""The metrics registry: which series exist and what they say."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from daemon.manifest import Manifest
from daemon.monitoring.metrics import Metrics

STARTED = datetime(2026, 11, 26, 4, 0, tzinfo=ZoneInfo("UTC"))


def manifest(kind: str, target: str) -> Manifest:
    return Manifest(kind=kind, target=target, file=f"{kind}_{target}.dump", size_bytes=10, sha256="ab",
                    started_at=STARTED, finished_at=STARTED + timedelta(seconds=5), server_version="15.8",
                    format="custom", compression="pg_dump")


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


class TestWholeKindFailure:
    def test_a_success_of_a_target_clears_the_failure_of_the_whole_kind(self):
        """A failure recorded for "all" (databases never listed) is no longer the latest run once one succeeds."""
        metrics = Metrics()
        metrics.record_failure("database", "all")
        metrics.record_success(manifest("database", "authdb"))
        assert sample(metrics, "pgbackup_last_run_success", kind="database", target="all") is None
        assert sample(metrics, "pgbackup_last_run_success", kind="database", target="authdb") == 1
        assert sample(metrics, "pgbackup_runs_total", kind="database", target="all", status="failure") == 1

    def test_failed_targets_keep_their_own_failure(self):
        """Only the "all" series goes: a database that failed in the same run still shows 0."""
        metrics = Metrics()
        metrics.record_failure("database", "all")
        metrics.record_failure("database", "apidb")
        metrics.record_success(manifest("database", "authdb"))
        assert sample(metrics, "pgbackup_last_run_success", kind="database", target="apidb") == 0

    def test_other_kinds_keep_their_failure(self):
        """A database success does not clear a failed table run."""
        metrics = Metrics()
        metrics.record_failure("table", "all")
        metrics.record_success(manifest("database", "authdb"))
        assert sample(metrics, "pgbackup_last_run_success", kind="table", target="all") == 0

    def test_full_backups_whose_target_is_all_are_set_to_success(self):
        """For full backups "all" is the real target: its gauge turns 1, it is not removed."""
        metrics = Metrics()
        metrics.record_failure("full", "all")
        metrics.record_success(manifest("full", "all"))
        assert sample(metrics, "pgbackup_last_run_success", kind="full", target="all") == 1


class TestCoveredTargets:
    """A target no scheduled run covers any more (a dropped database) stops being published as stale."""

    @staticmethod
    def manifest_of(target: str, started: datetime, offsite: bool = False) -> Manifest:
        return Manifest(kind="database", target=target, file=f"{target}.dump", size_bytes=10, sha256="ab",
                        started_at=started, finished_at=started + timedelta(seconds=5), server_version="15",
                        format="custom", compression="pg_dump",
                        offsite={"status": "complete"} if offsite else {})

    def freshness(self, metrics: Metrics, target: str) -> float | None:
        return metrics.registry.get_sample_value(
            "pgbackup_last_success_timestamp_seconds", {"kind": "database", "target": target})

    def test_targets_a_run_no_longer_covers_are_removed_and_stay_removed(self):
        metrics = Metrics()
        started = datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc)
        manifests = [self.manifest_of("authdb", started), self.manifest_of("legacydb", started)]
        metrics.load_manifests(manifests, started)
        assert self.freshness(metrics, "legacydb") == started.timestamp()  # unknown yet: every target counts

        metrics.cover_targets("database", ["authdb"])
        assert self.freshness(metrics, "legacydb") is None
        assert self.freshness(metrics, "authdb") == started.timestamp()
        metrics.load_manifests(manifests, started)  # the next rescan of BACKUP_DIR does not bring it back
        metrics.set_last_offsite_success(self.manifest_of("legacydb", started, offsite=True))
        assert self.freshness(metrics, "legacydb") is None
        assert metrics.registry.get_sample_value(
            "pgbackup_last_offsite_success_timestamp_seconds", {"kind": "database", "target": "legacydb"}) is None

    def test_a_failure_is_always_published(self):
        """Even for a target outside the covered set (PostgreSQL down before the databases were listed)."""
        metrics = Metrics()
        metrics.cover_targets("database", ["authdb"])
        metrics.record_failure("database", "all")
        assert metrics.registry.get_sample_value(
            "pgbackup_last_run_success", {"kind": "database", "target": "all"}) == 0
