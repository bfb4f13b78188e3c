"""The retention sweep over real files: BACKUP_DIR, the S3 prefix and the run logs.

Base backups and the WAL archive have one rule of their own, the recovery window
(PITR_WINDOW_DAYS), carried out by window_sweep.py: the day windows and tiers below never delete
a ``base`` backup.

Decisions come from retention.py (day windows, RETENTION_MIN_KEEP, and the GFS tiers:
RETENTION_KEEP_* locally, S3_RETENTION_KEEP_* in S3, on the calendar of TZ); this module only
reads manifests, carries the decisions out (artifact first, then its manifest), logs each
deletion and counts it in pgbackup_retention_deleted_total{kind,location}.

Only backups whose artifact is there with the size its manifest records go to the policy: a
manifest whose artifact was removed or cut short would otherwise anchor the window (or fill
a RETENTION_MIN_KEEP place) and expire the older backups that can still be restored. Such a
manifest is kept (it says what was lost), logged as ``retention_unusable_backup`` and
reported in the sweep report's ``unusable``; removing it is left to a person. Callers hold the backup lock (the after-run
hook already runs under it; ``locked_sweep`` takes it for the schedule and the CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.housekeeping.retention import (
    DELETE,
    KEEP,
    Decision,
    RetentionRefused,
    decide_run_logs,
    plan_sweep,
    refusals,
)
from daemon.housekeeping.runlog import is_our_run_log
from daemon.housekeeping.sweep_report import LOCAL, S3, SweepItem, SweepReport
from daemon.housekeeping.tiers import TIER_NAMES, Tiers
from daemon.housekeeping.window_sweep import sweep_window_local, sweep_window_offsite
from daemon.identity import Instance, split_by_owner, this_instance
from daemon.lock import backup_lock
from daemon.logs import get_logger
from daemon.manifest import Manifest, read_manifest, scan_manifests, write_manifest
from daemon.monitoring.metrics import Metrics
from daemon.naming import manifest_name
from daemon.settings import Settings
from daemon.wal.base import KIND as BASE_KIND

if TYPE_CHECKING:  # boto3 is imported only when S3 is used (see _sweep_offsite)
    from daemon.storage.s3 import Bucket, OffsiteCopy

log = get_logger(__name__)

UNUSABLE = "unusable"  # SweepItem.kept_by of a manifest whose artifact is missing or of another size

OpenBucket = Callable[[], object]  # returns a daemon.storage.s3.Bucket, built on first use




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


def local_tiers(settings: Settings) -> Tiers:
    """The GFS tiers in BACKUP_DIR (RETENTION_KEEP_*), on the calendar of TZ."""
    return _tiers(settings, "retention_keep_")


def offsite_tiers(settings: Settings) -> Tiers:
    """The GFS tiers in S3 (S3_RETENTION_KEEP_*), on the calendar of TZ."""
    return _tiers(settings, "s3_retention_keep_")


def _tiers(settings: Settings, prefix: str) -> Tiers:
    counts = {tier: getattr(settings, prefix + tier) or 0 for tier in TIER_NAMES}
    return Tiers(**counts, zone=settings.timezone)


def local_manifests(directory: Path, signing_key: bytes | None = None) -> list[Manifest]:
    """The manifests in BACKUP_DIR (daemon.manifest.scan_manifests), each one it cannot use logged."""
    scan = scan_manifests(directory, signing_key)
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
             refused=report.refused, unusable=len(report.unusable), errors=len(report.errors))
    return report


def locked_sweep(settings: Settings, metrics: Metrics, now: datetime, *, dry_run: bool = False, wait: bool = True,
                 open_bucket: OpenBucket | None = None) -> SweepReport:
    holder = {"job": "retention", "since": now.isoformat()}
    with backup_lock(settings.backup_dir, holder, wait=wait,
                     on_wait=lambda other: log.info("waiting_for_lock", held_by=other)):
        return sweep(settings, metrics, now, dry_run=dry_run, open_bucket=open_bucket)


def _plan(manifests: list[Manifest], now: datetime, days: dict[str, int], min_keep: int, tiers: Tiers,
          location: str, report: SweepReport, metrics: Metrics) -> list[Decision] | None:
    try:
        decisions = plan_sweep(manifests, now, days, min_keep, tiers)
    except RetentionRefused as error:
        log.error("retention_refused", location=location, reason=str(error))
        report.refused.append(f"{location}: {error}")
        return None
    _report_refusals(decisions, location, report, metrics)
    return decisions


def _report_refusals(decisions: list[Decision], location: str, report: SweepReport, metrics: Metrics) -> None:
    """Kinds and targets whose times the policy did not trust: logged, counted and reported."""
    for (kind, target, *_), reason in refusals(decisions).items():
        log.error("retention_refused", location=location, kind=kind, target=target, reason=reason)
        metrics.retention_refused.labels(kind, location).inc()
        report.refused.append(f"{location}: {reason}")


def artifact_problem(directory: Path, manifest: Manifest) -> str | None:
    """What keeps ``manifest``'s artifact from being a restorable backup, or None."""
    path = directory / manifest.file
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"its artifact {manifest.file} is missing"
    except OSError as error:
        return f"its artifact {manifest.file} cannot be examined: {error.strerror or error}"
    if not path.is_file():
        return f"its artifact {manifest.file} is not a regular file"
    if size != manifest.size_bytes:
        return f"its artifact {manifest.file} has {size} bytes, its manifest says {manifest.size_bytes}"
    return None


def _usable(located: list[tuple[Manifest, str | None]], location: str, report: SweepReport) -> list[Manifest]:
    """The manifests without a problem; each one with a problem is kept, logged and reported."""
    usable = []
    for manifest, problem in located:
        if problem is None:
            usable.append(manifest)
            continue
        log.warning("retention_unusable_backup", location=location, file=manifest.file, kind=manifest.kind,
                    target=manifest.target, problem=problem)
        report.unusable.append(f"{location}: {manifest.file}: {problem}")
        report.items.append(SweepItem(
            location, manifest.kind, manifest.target, manifest.file, manifest.started_at, KEEP,
            f"{problem}; manifest kept, not counted by retention (never the newest, never a GFS slot, "
            "never a reason to delete)", (UNUSABLE,),
        ))
    return usable


def _own(manifests: list[Manifest], instance: Instance, location: str, report: SweepReport) -> list[Manifest]:
    """This install's manifests; another install's are kept and reported, never counted or deleted."""
    own, foreign = split_by_owner(manifests, instance)
    for manifest in foreign:
        report.items.append(SweepItem(
            location, manifest.kind, manifest.target, manifest.file, manifest.started_at, KEEP,
            f"taken by the install {manifest.instance!r}: never counted or deleted by this one ({instance.name!r})",
            ("other install",),
        ))
    return own


def _item(location: str, decision: Decision) -> SweepItem:
    m = decision.manifest
    return SweepItem(location, m.kind, m.target, m.file, m.started_at, decision.action, decision.reason,
                     decision.kept_by)


def _sweep_local(settings: Settings, metrics: Metrics, now: datetime, dry_run: bool, report: SweepReport) -> None:
    directory = settings.backup_dir
    own = _own(local_manifests(directory, settings.signing_key), this_instance(settings, create=False), LOCAL, report)
    located = [(m, artifact_problem(directory, m)) for m in own]
    # Base backups have one rule, the recovery window, which weighs them together with the WAL.
    manifests = _usable([(m, problem) for m, problem in located if m.kind != BASE_KIND], LOCAL, report)
    decisions = _plan(manifests, now, local_retention_days(settings), settings.retention_min_keep,
                      local_tiers(settings), LOCAL, report, metrics)
    for decision in decisions or ():
        report.items.append(_item(LOCAL, decision))
        if decision.delete and not dry_run:
            _delete_local(directory, decision.manifest, decision.reason, metrics, report)
    bases = [(m, problem) for m, problem in located if m.kind == BASE_KIND]
    _usable(bases, LOCAL, report)  # the unusable ones logged and reported; the window keeps them
    sweep_window_local(settings, metrics, now, dry_run, report, bases,
                       lambda base, reason: _delete_local(directory, base, reason, metrics, report))


def _delete_local(directory: Path, manifest: Manifest, reason: str, metrics: Metrics, report: SweepReport) -> None:
    """An artifact, then its manifest; counted and logged."""
    artifact = directory / manifest.file
    try:
        if artifact.is_dir() and not artifact.is_symlink():
            raise IsADirectoryError(f"{artifact.name} is a directory")
        artifact.unlink(missing_ok=True)
        (directory / manifest_name(manifest.file)).unlink(missing_ok=True)
    except OSError as error:
        log.error("retention_delete_failed", location=LOCAL, file=artifact.name, error=str(error))
        report.errors.append(f"{artifact.name}: {error}")
        return
    metrics.retention_deleted.labels(manifest.kind, LOCAL).inc()
    log.info("retention_deleted", location=LOCAL, file=manifest.file, kind=manifest.kind,
             target=manifest.target, reason=reason)








def _sweep_offsite(settings: Settings, metrics: Metrics, now: datetime, dry_run: bool, report: SweepReport,
                   open_bucket: OpenBucket | None) -> None:
    # Imported here: boto3 costs about 0.4 s of import time, which `pgbackup prune` without S3 need not pay.
    from daemon.storage.s3 import Bucket, describe
    from daemon.storage.s3_claim import check_claim, ensure_claimed

    instance = this_instance(settings, create=False)  # a sweep creates nothing: it must work on a full disk
    try:
        bucket = open_bucket() if open_bucket else Bucket.from_settings(settings)
        # Another install's prefix: nothing in it is deleted. A dry run writes no claim.
        if dry_run:
            check_claim(bucket, instance)
        else:
            ensure_claimed(bucket, instance, now)
        listed, forged = bucket.scan_copies()
        copies = {copy.manifest.file: copy for copy in listed}
        metrics.tampered_manifests.labels(S3).set(len(forged))
    except Exception as error:  # noqa: BLE001 - e.g. boto3 refusing the endpoint: S3's part only fails
        log.error("offsite_retention_failed", error=describe(error))
        report.errors.append(f"s3: {describe(error)}")
        return
    own = _own([copy.manifest for copy in copies.values()], instance, S3, report)
    located = [(manifest, _copy_problem(copies[manifest.file])) for manifest in own]
    generic = [(manifest, problem) for manifest, problem in located if manifest.kind != BASE_KIND]
    decisions = _plan(_usable(generic, S3, report), now, offsite_retention_days(settings),
                      settings.retention_min_keep, offsite_tiers(settings), S3, report, metrics)
    for decision in decisions or ():
        _carry_out_offsite(settings, metrics, now, dry_run, report, bucket, copies[decision.manifest.file], decision)
    bases = [(manifest, problem) for manifest, problem in located if manifest.kind == BASE_KIND]
    _usable(bases, S3, report)
    sweep_window_offsite(settings, metrics, now, dry_run, report, bucket, bases, lambda decision: _carry_out_offsite(
        settings, metrics, now, dry_run, report, bucket, copies[decision.manifest.file], decision))


def _carry_out_offsite(settings: Settings, metrics: Metrics, now: datetime, dry_run: bool, report: SweepReport,
                       bucket: Bucket, copy: OffsiteCopy, decision: Decision) -> None:
    """One decision on an S3 copy: reported, and a deletion done unless Object Lock holds the copy."""
    from daemon.storage.s3 import S3_ERRORS, OffsiteError, describe  # boto3's import time, as in _sweep_offsite

    if decision.delete:
        decision = _unless_locked(decision, bucket, copy, now, report)
    report.items.append(_item(S3, decision))
    if not decision.delete or dry_run:
        return
    try:
        bucket.delete_copy(copy)
    except S3_ERRORS + (OffsiteError,) as error:
        log.error("retention_delete_failed", location=S3, key=copy.artifact_key, error=describe(error))
        report.errors.append(f"{copy.artifact_key}: {describe(error)}")
        return
    metrics.retention_deleted.labels(decision.manifest.kind, S3).inc()
    log.info("retention_deleted", location=S3, key=copy.artifact_key, kind=decision.manifest.kind,
             target=decision.manifest.target, reason=decision.reason)
    _mark_offsite_deleted(settings.backup_dir, decision.manifest.file, now)






def _unless_locked(decision: Decision, bucket: Bucket, copy: OffsiteCopy, now: datetime,
                   report: SweepReport) -> Decision:
    """The decision, or KEEP while the copy's artifact is under S3 Object Lock retention: a locked
    copy is not even tried (with versioning, a plain delete would only hide it behind a delete
    marker). A retention date that cannot be read keeps it too."""
    if not bucket.object_lock_days:
        return decision
    from daemon.storage.s3 import S3_ERRORS, describe  # boto3's import time, as in _sweep_offsite

    try:
        until = bucket.locked_until(copy.artifact_key)
    except S3_ERRORS as error:
        report.errors.append(f"{copy.artifact_key}: its Object Lock retention cannot be read: {describe(error)}")
        return Decision(decision.manifest, KEEP, "its Object Lock retention cannot be read", kept_by=("object lock",))
    if until is None or until <= now:
        return decision
    log.info("retention_held_by_object_lock", location=S3, key=copy.artifact_key, locked_until=until.isoformat())
    return Decision(decision.manifest, KEEP, f"S3 Object Lock until {until.isoformat(' ', 'seconds')}",
                    kept_by=("object lock",))


def _copy_problem(copy: OffsiteCopy) -> str | None:
    """An S3 copy whose object differs in size from its manifest."""
    if copy.size_bytes != copy.manifest.size_bytes:
        return f"its S3 object {copy.artifact_key} has {copy.size_bytes} bytes, its manifest says {copy.manifest.size_bytes}"
    return None


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
