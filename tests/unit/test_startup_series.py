"""Counters exist at 0 from the daemon's start, so that increase() in the alert rules sees
their first failure (a series that appears already at 1 has not increased)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.manifest import Manifest, write_manifest
from daemon.monitoring.metrics import Metrics
from daemon.service import assemble
from daemon.settings import Settings

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def start_up(backup_dir, **values) -> Metrics:
    """The daemon as run_daemon assembles it before it serves /metrics."""
    settings = Settings(postgres_container="pg", backup_dir=backup_dir, **values)
    return assemble(settings, NOW).metrics


def series(metrics: Metrics, name: str, *label_names: str) -> dict[tuple[str, ...], float]:
    """Every sample of ``name``, by its values of ``label_names``."""
    return {
        tuple(sample.labels[label] for label in label_names): sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def database_backup(directory, database: str) -> None:
    write_manifest(directory, Manifest(
        kind="database", target=database, file=f"{database}_20261125_040000.dump", size_bytes=10, sha256="ab",
        started_at=NOW - timedelta(days=1), finished_at=NOW - timedelta(days=1), server_version="15.8",
        format="custom", compression="pg_dump"))


class TestNotificationFailures:
    def test_each_configured_channel_starts_at_zero(self, tmp_path):
        """Slack and the webhook each have their failure counter at 0 before any notice is sent."""
        metrics = start_up(tmp_path, slack_webhook_url="https://hooks.slack.invalid/x",
                           webhook_url="https://hooks.invalid/pgbackup")
        assert series(metrics, "pgbackup_notification_failures_total", "channel") == {
            ("slack",): 0.0, ("webhook",): 0.0}

    def test_channels_not_configured_have_no_series(self, tmp_path):
        """Without a channel there is nothing to fail, and no series."""
        metrics = start_up(tmp_path, webhook_url="https://hooks.invalid/pgbackup")
        assert series(metrics, "pgbackup_notification_failures_total", "channel") == {("webhook",): 0.0}


class TestS3UploadFailures:
    def test_targets_known_at_start_up_start_at_zero(self, tmp_path):
        """Each uploaded kind's targets from the settings and the manifests on disk have their counter at 0."""
        database_backup(tmp_path, "admindb")  # BACKUP_DATABASES empty: a target seen in the manifests
        metrics = start_up(tmp_path, s3_bucket="backups", backup_tables="apidb:users", volume_name="pgdata")
        assert series(metrics, "pgbackup_s3_upload_failures_total", "kind", "target") == {
            ("full", "all"): 0.0, ("pre_migration", "all"): 0.0, ("database", "admindb"): 0.0,
            ("table", "apidb"): 0.0, ("volume", "pgdata"): 0.0}

    def test_listed_databases_start_at_zero(self, tmp_path):
        """With BACKUP_DATABASES the per-database targets are known before their first backup."""
        metrics = start_up(tmp_path, s3_bucket="backups", backup_databases="authdb,apidb", s3_upload_kinds="database")
        assert series(metrics, "pgbackup_s3_upload_failures_total", "kind", "target") == {
            ("database", "authdb"): 0.0, ("database", "apidb"): 0.0}

    def test_no_series_without_offsite_copies(self, tmp_path):
        """Without S3_BUCKET nothing is uploaded, and no upload can fail."""
        database_backup(tmp_path, "admindb")
        metrics = start_up(tmp_path, backup_databases="authdb")
        assert series(metrics, "pgbackup_s3_upload_failures_total", "kind", "target") == {}


class TestRunCounts:
    def test_scheduled_targets_start_at_zero(self, tmp_path):
        """Each scheduled kind's expected targets have their run counters at 0; a kind that is off has none."""
        metrics = start_up(tmp_path, backup_databases="authdb,apidb", backup_tables="apidb:users",
                           volume_name="pgdata", schedule_full="off")
        assert series(metrics, "pgbackup_runs_total", "kind", "target", "status") == {
            (kind, target, status): 0.0
            for kind, target in [("database", "authdb"), ("database", "apidb"), ("table", "apidb"),
                                 ("volume", "pgdata")]
            for status in ("success", "failure")}

    def test_a_failure_before_the_databases_are_listed_is_counted_from_zero(self, tmp_path):
        """Without BACKUP_DATABASES a run that cannot list them fails for "all": that counter starts at 0."""
        metrics = start_up(tmp_path)
        failures = series(metrics, "pgbackup_runs_total", "kind", "target", "status")
        assert failures[("database", "all", "failure")] == 0.0 and failures[("full", "all", "failure")] == 0.0
