"""The metrics registry: which series exist and what they say."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.manifest import Manifest
from daemon.metrics import Metrics

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
