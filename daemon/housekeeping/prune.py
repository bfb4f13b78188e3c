"""The retention sweep over real files: BACKUP_DIR, the S3 prefix and the run logs.

Decisions come from retention.py; this module only reads manifests, carries the decisions
out (artifact first, then its manifest), logs each deletion and counts it in
pgbackup_retention_deleted_total{kind,location}. Callers hold the backup lock (the after-run
hook already runs under it; ``locked_sweep`` takes it for the schedule and the CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from daemon.housekeeping.retention import (
    DELETE,
    Decision,
    RetentionRefused,
    decide_run_logs,
    plan_sweep,
    refusals,
)
from daemon.housekeeping.runlog import is_our_run_log
from daemon.lock import backup_lock
from daemon.logs import get_logger
from daemon.manifest import Manifest, read_manifest, scan_manifests, write_manifest
from daemon.monitoring.metrics import Metrics
from daemon.naming import manifest_name
from daemon.settings import Settings

log = get_logger(__name__)

LOCAL = "local"
S3 = "s3"

OpenBucket = Callable[[], object]  # returns a daemon.storage.s3.Bucket, built on first use


@dataclass(frozen=True)
class SweepItem:
    location: str  # local | s3 | log
    kind: str
    target: str
    file: str
    started_at: datetime | None
    action: str
    reason: str


@dataclass
class SweepReport:
    items: list[SweepItem] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> list[SweepItem]:
        return [item for item in self.items if item.action == DELETE]


def local_retention_days(settings: Settings) -> dict[str, int]:
    """Days each kind is kept in BACKUP_DIR (pre_migration has no entry: kept forever)."""
    return {
        "full": settings.retention_full_days,
        "database": settings.retention_database_days,
        "table": settings.retention_table_days,
        "volume": settings.retention_volume_days,
    }


def offsite_retention_days(settings: Settings) -> dict[str, int]:
    """Days each kind is kept in S3: S3_RETENTION_DAYS for every kind but pre_migration."""
    return {kind: settings.s3_retention_days for kind in ("full", "database", "table", "volume")}


def local_manifests(directory: Path) -> list[Manifest]:
    """The manifests in BACKUP_DIR (daemon.manifest.scan_manifests), each one it cannot use logged."""
    scan = scan_manifests(directory)
    for path, problem in scan.unreadable:
        log.warning("manifest_unreadable", file=path.name, error=problem)
    return scan.manifests


def sweep(settings: Settings, metrics: Metrics, now: datetime, *, dry_run: bool = False,
          open_bucket: OpenBucket | None = None) -> SweepReport:
    """One sweep over every location; a problem in one location never stops the others.
    ``open_bucket`` returns the S3 bucket (default: one built from the settings); it is called
    in the offsite part, so an S3 setting it cannot use fails that part only."""
    report = SweepReport()
    _sweep_local(settings, metrics, now, dry_run, report)
    if settings.offsite_enabled:
        _sweep_offsite(settings, metrics, now, dry_run, report, open_bucket)
    _sweep_run_logs(settings, now, dry_run, report)
    log.info("retention_sweep_finished", dry_run=dry_run, deletions=len(report.deleted),
             refused=report.refused, errors=len(report.errors))
    return report


def locked_sweep(settings: Settings, metrics: Metrics, now: datetime, *, dry_run: bool = False, wait: bool = True,
                 open_bucket: OpenBucket | None = None) -> SweepReport:
    holder = {"job": "retention", "since": now.isoformat()}
    with backup_lock(settings.backup_dir, holder, wait=wait,
                     on_wait=lambda other: log.info("waiting_for_lock", held_by=other)):
        return sweep(settings, metrics, now, dry_run=dry_run, open_bucket=open_bucket)


def _plan(manifests: list[Manifest], now: datetime, days: dict[str, int], min_keep: int, location: str,
          report: SweepReport, metrics: Metrics) -> list[Decision] | None:
    try:
        decisions = plan_sweep(manifests, now, days, min_keep)
    except RetentionRefused as error:
        log.error("retention_refused", location=location, reason=str(error))
        report.refused.append(f"{location}: {error}")
        return None
    _report_refusals(decisions, location, report, metrics)
    return decisions


def _report_refusals(decisions: list[Decision], location: str, report: SweepReport, metrics: Metrics) -> None:
    """Kinds and targets whose times the policy did not trust: logged, counted and reported."""
    for (kind, target), reason in refusals(decisions).items():
        log.error("retention_refused", location=location, kind=kind, target=target, reason=reason)
        metrics.retention_refused.labels(kind, location).inc()
        report.refused.append(f"{location}: {reason}")


def _item(location: str, decision: Decision) -> SweepItem:
    m = decision.manifest
    return SweepItem(location, m.kind, m.target, m.file, m.started_at, decision.action, decision.reason)


def _sweep_local(settings: Settings, metrics: Metrics, now: datetime, dry_run: bool, report: SweepReport) -> None:
    directory = settings.backup_dir
    decisions = _plan(local_manifests(directory), now, local_retention_days(settings),
                      settings.retention_min_keep, LOCAL, report, metrics)
    for decision in decisions or ():
        report.items.append(_item(LOCAL, decision))
        if not decision.delete or dry_run:
            continue
        artifact = directory / decision.manifest.file
        try:
            if artifact.is_dir() and not artifact.is_symlink():
                raise IsADirectoryError(f"{artifact.name} is a directory")
            artifact.unlink(missing_ok=True)
            (directory / manifest_name(decision.manifest.file)).unlink(missing_ok=True)
        except OSError as error:
            log.error("retention_delete_failed", location=LOCAL, file=artifact.name, error=str(error))
            report.errors.append(f"{artifact.name}: {error}")
            continue
        metrics.retention_deleted.labels(decision.manifest.kind, LOCAL).inc()
        log.info("retention_deleted", location=LOCAL, file=decision.manifest.file, kind=decision.manifest.kind,
                 target=decision.manifest.target, reason=decision.reason)


def _sweep_offsite(settings: Settings, metrics: Metrics, now: datetime, dry_run: bool, report: SweepReport,
                   open_bucket: OpenBucket | None) -> None:
    # Imported here: boto3 costs about 0.4 s of import time, which `pgbackup prune` without S3 need not pay.
    from daemon.storage.s3 import S3_ERRORS, Bucket, OffsiteError, describe

    try:
        bucket = open_bucket() if open_bucket else Bucket.from_settings(settings)
        copies = {copy.manifest.file: copy for copy in bucket.list_copies()}
    except Exception as error:  # noqa: BLE001 - e.g. boto3 refusing the endpoint: S3's part only fails
        log.error("offsite_retention_failed", error=describe(error))
        report.errors.append(f"s3: {describe(error)}")
        return
    decisions = _plan([copy.manifest for copy in copies.values()], now, offsite_retention_days(settings),
                      settings.retention_min_keep, S3, report, metrics)
    for decision in decisions or ():
        report.items.append(_item(S3, decision))
        if not decision.delete or dry_run:
            continue
        copy = copies[decision.manifest.file]
        if copy.size_bytes != copy.manifest.size_bytes:
            log.warning("offsite_copy_size_mismatch", key=copy.artifact_key)
            continue
        try:
            bucket.delete_copy(copy)
        except S3_ERRORS + (OffsiteError,) as error:
            log.error("retention_delete_failed", location=S3, key=copy.artifact_key, error=describe(error))
            report.errors.append(f"{copy.artifact_key}: {describe(error)}")
            continue
        metrics.retention_deleted.labels(decision.manifest.kind, S3).inc()
        log.info("retention_deleted", location=S3, key=copy.artifact_key, kind=decision.manifest.kind,
                 target=decision.manifest.target, reason=decision.reason)
        _mark_offsite_deleted(settings.backup_dir, decision.manifest.file, now)


def _mark_offsite_deleted(directory: Path, file_name: str, now: datetime) -> None:
    """The local manifest remembers that its offsite copy expired, so it is not uploaded again."""
    path = directory / manifest_name(file_name)
    if not path.exists():
        return
    try:
        manifest = read_manifest(path)
        manifest.offsite = {**manifest.offsite, "status": "deleted", "deleted_at": now.isoformat()}
        write_manifest(directory, manifest)
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("manifest_update_failed", file=path.name, error=str(error))


def _sweep_run_logs(settings: Settings, now: datetime, dry_run: bool, report: SweepReport) -> None:
    directory = settings.backup_dir
    if not directory.is_dir():
        return
    names = [path.name for path in directory.iterdir() if path.is_file() and is_our_run_log(path)]
    for decision in decide_run_logs(names, now, settings.retention_log_days):
        report.items.append(SweepItem("log", "run_log", "-", decision.name, None, decision.action, decision.reason))
        if decision.action != DELETE or dry_run:
            continue
        try:
            (directory / decision.name).unlink(missing_ok=True)
            log.info("retention_deleted", location="log", file=decision.name, reason=decision.reason)
        except OSError as error:
            report.errors.append(f"{decision.name}: {error}")
