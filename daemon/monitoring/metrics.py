"""Every Prometheus metric the daemon publishes, defined once, in its own registry."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from daemon.clock import is_future
from daemon.manifest import Manifest, newest_by_kind_and_target

STATUSES = ("success", "failure")
# The target of full and pre-migration backups, and of a failure recorded before a run knew
# its targets (PostgreSQL down, no database to back up).
WHOLE_KIND = "all"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        by_artifact = ["kind", "target"]
        self.last_success_timestamp = Gauge(
            "pgbackup_last_success_timestamp_seconds",
            "Start time (the data's point in time) of the newest successful backup", by_artifact, registry=r)
        self.last_size = Gauge(
            "pgbackup_last_size_bytes", "Size of the newest successful backup", by_artifact, registry=r)
        self.last_duration = Gauge(
            "pgbackup_last_duration_seconds", "Duration of the newest successful backup", by_artifact, registry=r)
        self.runs = Counter(
            "pgbackup_runs", "Backups attempted, by outcome", [*by_artifact, "status"], registry=r)
        self.last_run_success = Gauge(
            "pgbackup_last_run_success", "1 if the latest backup succeeded, 0 if it failed", by_artifact, registry=r)
        self.in_progress = Gauge(
            "pgbackup_backup_in_progress", "1 while a backup of this kind runs", ["kind"], registry=r)
        self.max_age = Gauge(
            "pgbackup_max_age_seconds", "Configured freshness limit (BACKUP_MAX_AGE_HOURS)", registry=r)
        self.kind_max_age = Gauge(
            "pgbackup_kind_max_age_seconds",
            "Freshness limit of each scheduled kind, as /healthz applies it: BACKUP_MAX_AGE_HOURS, or for "
            "kinds with their own allowance (volume) their longest schedule interval plus that", ["kind"], registry=r)
        self.future_dated = Gauge(
            "pgbackup_future_dated_backups",
            "Backups whose start lies in the future (a clock that was or is wrong): their time is unknown, so "
            "they count for no freshness metric and retention refuses to act on their kind and target",
            by_artifact, registry=r)
        self.tampered_manifests = Gauge(
            "pgbackup_tampered_manifests",
            "Manifests that are unsigned or badly signed while MANIFEST_SIGNING_KEY is set (possible tampering): "
            "never restored, counted or deleted; location local (BACKUP_DIR, at each rescan) or s3 (at each "
            "retention sweep)", ["location"], registry=r)
        self.min_size = Gauge(
            "pgbackup_min_size_bytes", "Configured minimum backup size (BACKUP_MIN_SIZE_BYTES)", registry=r)
        self.scheduler_running = Gauge(
            "pgbackup_scheduler_running", "1 while the scheduler runs", registry=r)
        # offsite copies
        self.last_offsite_success = Gauge(
            "pgbackup_last_offsite_success_timestamp_seconds",
            "Start time of the newest backup whose offsite copy is complete", by_artifact, registry=r)
        self.s3_upload_failures = Counter(
            "pgbackup_s3_upload_failures", "Offsite uploads that failed", by_artifact, registry=r)
        # leftovers of a killed sidecar, swept once at start (housekeeping/debris.py)
        self.debris_removed = Counter(
            "pgbackup_debris_removed", "Leftovers of a killed sidecar removed at start, by what they were",
            ["what"], registry=r)
        self.debris_sweep_errors = Counter(
            "pgbackup_debris_sweep_errors", "Sweeps of leftovers at start that failed (the log says why)",
            ["what"], registry=r)
        # retention and notifications
        self.retention_deleted = Counter(
            "pgbackup_retention_deleted", "Backups deleted by retention", ["kind", "location"], registry=r)
        self.retention_refused = Counter(
            "pgbackup_retention_refused",
            "Sweeps that deleted nothing of a kind because its backups' times were not believable (a backup "
            "dated in the future, or one that jumped far ahead of the rest)", ["kind", "location"], registry=r)
        self.notification_failures = Counter(
            "pgbackup_notification_failures", "Notifications that could not be delivered", ["channel"], registry=r)
        self.hook_failures = Counter(
            "pgbackup_hook_failures", "Hook commands that failed, timed out or could not start", ["hook"], registry=r)
        # volume snapshots
        self.volume_downtime = Gauge(
            "pgbackup_volume_downtime_seconds", "Database downtime of the latest volume snapshot", ["target"],
            registry=r)
        self.database_stopped_by_sidecar = Gauge(
            "pgbackup_database_stopped_by_sidecar",
            "1 while a container a volume snapshot stopped is not running again (its start failed and is "
            "retried, or the record is stale and it is left stopped), else 0", ["container"], registry=r)
        self.database_restart_failures = Counter(
            "pgbackup_database_restart_failures",
            "Failed attempts to start a container a volume snapshot stopped", ["container"], registry=r)
        # restore tests
        self.restore_test_last_success = Gauge(
            "pgbackup_restore_test_last_success_timestamp_seconds", "Time of the newest successful restore test",
            ["target"], registry=r)
        self.restore_test_max_age = Gauge(
            "pgbackup_restore_test_max_age_seconds",
            "Freshness limit of the restore test: its longest schedule interval plus BACKUP_MAX_AGE_HOURS",
            registry=r)
        self.restore_test_runs = Counter(
            "pgbackup_restore_test_runs", "Restore tests run, by outcome", ["status"], registry=r)
        self.restore_test_duration = Gauge(
            "pgbackup_restore_test_duration_seconds", "Duration of the latest restore test (the measured RTO)",
            registry=r)
        self.restore_test_last_run_success = Gauge(
            "pgbackup_restore_test_last_run_success", "1 if the latest restore test passed, 0 if it failed",
            registry=r)
        # WAL streaming (daemon/wal/)
        # Labelled by slot, so that they exist only with WAL_STREAMING=on (an alert on them stays quiet otherwise).
        self.wal_last_received = Gauge(
            "pgbackup_wal_last_received_timestamp_seconds",
            "When WAL last arrived from the server (recovery is possible up to about this time)", ["slot"],
            registry=r)
        self.wal_receiver_up = Gauge(
            "pgbackup_wal_receiver_up", "1 while pg_receivewal streams WAL, 0 while it is down", ["slot"], registry=r)
        self.wal_receiver_restarts = Counter(
            "pgbackup_wal_receiver_restarts", "Times the WAL receiver exited and was started again", registry=r)
        # ... and from the WAL monitor's poll of the server (daemon/wal/monitor.py, daemon/wal/lag.py)
        self.wal_recoverable_until = Gauge(
            "pgbackup_wal_recoverable_until_timestamp_seconds",
            "Time up to which point-in-time recovery is possible: the latest poll that found the receiver "
            "caught up (receive lag 0 bytes), else when WAL last arrived", ["slot"], registry=r)
        self.wal_max_lag = Gauge(
            "pgbackup_wal_max_lag_seconds", "Configured limit of the recovery point's age (WAL_MAX_LAG_SECONDS)",
            ["slot"], registry=r)
        self.wal_receive_lag = Gauge(
            "pgbackup_wal_receive_lag_bytes",
            "The server's current WAL position minus what the receiver has flushed", ["slot"], registry=r)
        self.wal_slot_retained = Gauge(
            "pgbackup_wal_slot_retained_bytes",
            "WAL the server keeps for the slot (current position minus the slot's restart_lsn)", ["slot"], registry=r)
        self.wal_slot_retained_max = Gauge(
            "pgbackup_wal_slot_retained_max_bytes",
            "Retention limit /healthz applies: WAL_SLOT_RETAINED_MAX_BYTES, or 80 % of the server's "
            "max_slot_wal_keep_size when that is lower", ["slot"], registry=r)
        self.wal_slot_safe = Gauge(
            "pgbackup_wal_slot_safe_bytes",
            "WAL the server may still write before the slot is in danger of losing WAL (safe_wal_size; no "
            "series while max_slot_wal_keep_size is unlimited)", ["slot"], registry=r)
        self.wal_slot_status = Gauge(
            "pgbackup_wal_slot_status",
            "1 for the slot's wal_status in pg_replication_slots (reserved, extended, unreserved, lost), 0 for "
            "the others", ["slot", "wal_status"], registry=r)
        self.wal_monitor_failures = Counter(
            "pgbackup_wal_monitor_failures", "Polls of the server's WAL and slot positions that failed (logged as "
            "wal_monitor_failed)", registry=r)
        # The per-target series the staleness alerts read, and which targets each kind's
        # scheduled run covers now (unknown until its first run: every target counts).
        self._freshness_gauges = (self.last_success_timestamp, self.last_size, self.last_duration,
                                  self.last_run_success, self.last_offsite_success)
        self._covered: dict[str, set[str]] = {}
        self._published: dict[str, set[str]] = {}

    def configure(self, max_age_hours: float, min_size_bytes: int) -> None:
        self.max_age.set(max_age_hours * 3600)
        self.min_size.set(min_size_bytes)

    def publish_allowances(self, allowances: dict[str, float]) -> None:
        """Seconds each scheduled kind may age before it is stale (HealthState.allowances)."""
        for kind, seconds in allowances.items():
            self.kind_max_age.labels(kind).set(seconds)

    def declare(self, kind: str, target: str) -> None:
        """Create a target's series at zero so that increase() sees its first failure."""
        for status in STATUSES:
            self.runs.labels(kind, target, status)

    def cover_targets(self, kind: str, targets: Iterable[str]) -> None:
        """The targets a complete scheduled run of ``kind`` covers now (its plans).

        Any other target of that kind (a dropped database, one backed up only by hand) no
        longer has its freshness published: retention keeps its newest backup for ever, so
        PgBackupStale would fire for it for ever. Its counters stay (they only ever grow).
        """
        covered = set(targets)
        self._covered[kind] = covered
        for target in self._published.get(kind, set()) - covered:
            for gauge in self._freshness_gauges:
                gauge.remove(kind, target)
        self._published[kind] = self._published.get(kind, set()) & covered

    def covers(self, kind: str, target: str) -> bool:
        covered = self._covered.get(kind)
        return covered is None or target in covered

    def set_last_offsite_success(self, manifest: Manifest) -> None:
        if self._publishing(manifest.kind, manifest.target):
            self.last_offsite_success.labels(manifest.kind, manifest.target).set(manifest.started_at.timestamp())

    def _publishing(self, kind: str, target: str) -> bool:
        """Whether ``target``'s freshness is published; remembers that it is."""
        if not self.covers(kind, target):
            return False
        self._published.setdefault(kind, set()).add(target)
        return True

    def record_success(self, manifest: Manifest) -> None:
        kind, target = manifest.kind, manifest.target
        self.declare(kind, target)
        self.runs.labels(kind, target, "success").inc()
        if self._publishing(kind, target):
            self.last_run_success.labels(kind, target).set(1)
        if target != WHOLE_KIND:
            # A failure of the whole kind is no longer the latest run of it; left at 0, its
            # series would keep PgBackupLastRunFailed firing until the daemon restarts.
            self.last_run_success.remove(kind, WHOLE_KIND)
        self._set_newest(manifest)

    def record_failure(self, kind: str, target: str) -> None:
        self.declare(kind, target)
        self.runs.labels(kind, target, "failure").inc()
        self.last_run_success.labels(kind, target).set(0)  # a failure is always shown
        self._published.setdefault(kind, set()).add(target)

    def load_manifests(self, manifests: Iterable[Manifest], now: datetime) -> None:
        """Restore the 'newest backup' gauges after a restart from what is on disk.

        A backup dated in the future is never the newest (its time is unknown, and published
        it would keep PgBackupStale quiet for as long as it lies ahead): it is counted in
        pgbackup_future_dated_backups instead, which PgBackupClockSkew watches.
        """
        manifests = list(manifests)
        future: dict[tuple[str, str], int] = {}
        for manifest in manifests:
            key = (manifest.kind, manifest.target)
            future[key] = future.get(key, 0) + is_future(manifest.started_at, now)
        for (kind, target), count in future.items():
            self.future_dated.labels(kind, target).set(count)
        believable = [manifest for manifest in manifests if not is_future(manifest.started_at, now)]
        for manifest in newest_by_kind_and_target(believable).values():
            self.declare(manifest.kind, manifest.target)
            self._set_newest(manifest)

    def _set_newest(self, manifest: Manifest) -> None:
        labels = (manifest.kind, manifest.target)
        if not self._publishing(*labels):
            return
        self.last_success_timestamp.labels(*labels).set(manifest.started_at.timestamp())
        self.last_size.labels(*labels).set(manifest.size_bytes)
        self.last_duration.labels(*labels).set(manifest.duration_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
