"""The recovery window (PITR_WINDOW_DAYS, policy in wal/window.py) carried out by the retention
sweep (prune.py): base backups and BACKUP_DIR/wal/ locally, base copies and <S3_PREFIX>/wal/ in
S3. The day windows and tiers never weigh a ``base`` backup; this is its one rule.

Locally it runs under the archive's lock (wal/archive.py), so no archive pass writes while it
lists and deletes, and a WAL file goes record first (wal/prune.py). In S3 a WAL file is kept
while its record (uploaded last) is under Object Lock. Base backups are deleted by the caller's
own code (``delete_base``, ``carry_out``), the same as every other kind. WAL deletions are
counted in pgbackup_retention_deleted_total with kind ``wal``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from daemon.housekeeping.retention import DELETE, KEEP, Decision
from daemon.housekeeping.sweep_report import LOCAL, S3, SweepItem, SweepReport
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.wal.archive import archive_lock, wal_dir
from daemon.wal.base import KIND as BASE_KIND
from daemon.wal.base import TARGET as BASE_TARGET
from daemon.wal.prune import archived_files, delete_archived, spool_names
from daemon.wal.window import WalDecision, plan_window

if TYPE_CHECKING:  # boto3 is imported only when S3 is used
    from daemon.storage.s3 import Bucket

log = get_logger(__name__)

WINDOW_RULE = "recovery window"  # SweepItem.kept_by of a base backup or WAL that PITR_WINDOW_DAYS keeps
WAL_KIND = "wal"  # SweepItem.kind and the metrics' kind of archived WAL files

DeleteBase = Callable[[Manifest, str], None]  # a local base backup and the reason: artifact, then manifest
CarryOut = Callable[[Decision], None]  # a decision on an S3 base copy: reported, and done unless locked


def sweep_window_local(settings: Settings, metrics: Metrics, now: datetime, dry_run: bool, report: SweepReport,
                       bases: list[tuple[Manifest, str | None]], delete_base: DeleteBase) -> None:
    """PITR_WINDOW_DAYS over the base backups and BACKUP_DIR/wal/ (policy: wal/window.py). Under
    the archive's lock (not for a dry run, which writes nothing): no archive pass writes while
    names are listed and deleted."""
    if not bases and not wal_dir(settings.backup_dir).is_dir():
        return
    if dry_run or not wal_dir(settings.backup_dir).is_dir():
        _apply_window_local(settings, metrics, now, dry_run, report, bases, delete_base)
        return
    with archive_lock(settings.backup_dir):
        _apply_window_local(settings, metrics, now, dry_run, report, bases, delete_base)


def _apply_window_local(settings: Settings, metrics: Metrics, now: datetime, dry_run: bool, report: SweepReport,
                        bases: list[tuple[Manifest, str | None]], delete_base: DeleteBase) -> None:
    directory = settings.backup_dir
    files = archived_files(directory)
    plan = plan_window([m for m, _ in bases], {m.file: p for m, p in bases if p}, files, now,
                       settings.pitr_window_days, spool_names(directory))
    if plan.refused:
        log.error("retention_refused", location=LOCAL, kind=BASE_KIND, reason=plan.refused)
        metrics.retention_refused.labels(BASE_KIND, LOCAL).inc()
        report.refused.append(f"{LOCAL}: recovery window: {plan.refused}")
    problems = {m.file for m, problem in bases if problem}
    for decision in plan.bases:
        base = decision.manifest
        if base.file not in problems:  # reported as unusable by the caller already
            kept_by = () if decision.delete else ("refused",) if plan.refused else (WINDOW_RULE,)
            report.items.append(SweepItem(LOCAL, base.kind, base.target, base.file, base.started_at,
                                          decision.action, decision.reason, kept_by))
        if decision.delete and not dry_run:
            delete_base(base, decision.reason)
    _report_wal(plan.wal, LOCAL, report)
    for name in plan.wal_deleted:
        if dry_run:
            continue
        try:
            delete_archived(files[name])
        except OSError as error:
            log.error("retention_delete_failed", location=LOCAL, file=name, error=str(error))
            report.errors.append(f"wal/{name}: {error}")
            continue
        metrics.retention_deleted.labels(WAL_KIND, LOCAL).inc()
    if plan.wal_deleted and not dry_run:
        log.info("retention_deleted_wal", location=LOCAL, files=len(plan.wal_deleted), first=plan.wal_deleted[0],
                 last=plan.wal_deleted[-1], kept_from=plan.first_kept_segment.name if plan.first_kept_segment else None)


def _report_wal(decisions: list[WalDecision], location: str, report: SweepReport) -> None:
    """Each WAL file the window deletes as an item; the ones it keeps as one line per reason."""
    kept: dict[str, list[str]] = {}
    for decision in decisions:
        if decision.delete:
            report.items.append(SweepItem(location, WAL_KIND, BASE_TARGET, f"wal/{decision.name}", None, DELETE,
                                          decision.reason))
        else:
            kept.setdefault(decision.reason, []).append(decision.name)
    for reason, names in kept.items():
        span = f"wal/{names[0]}" if len(names) == 1 else f"wal/{names[0]} .. {names[-1]} ({len(names)} files)"
        kept_by = ("refused",) if reason.startswith("refused: ") else (WINDOW_RULE,)
        report.items.append(SweepItem(location, WAL_KIND, BASE_TARGET, span, None, KEEP, reason, kept_by))


def sweep_window_offsite(settings: Settings, metrics: Metrics, now: datetime, dry_run: bool, report: SweepReport,
                         bucket: Bucket, bases: list[tuple[Manifest, str | None]], carry_out: CarryOut) -> None:
    """The recovery window over the base backups in S3 and ``<prefix>/wal/``: the same plan as
    locally, made from what S3 holds (a base or a WAL file deleted locally may still be there)."""
    from daemon.storage.s3 import S3_ERRORS, OffsiteError, describe  # boto3's import time: only with S3
    from daemon.wal.offsite import WAL_FOLDER, offsite_wal_files

    try:
        files = offsite_wal_files(bucket)
    except S3_ERRORS as error:
        report.errors.append(f"s3 {WAL_FOLDER}: {describe(error)}")
        return
    if not bases and not files:
        return
    problems = {manifest.file: problem for manifest, problem in bases if problem}
    plan = plan_window([manifest for manifest, _ in bases], problems, files, now, settings.pitr_window_days)
    if plan.refused:
        log.error("retention_refused", location=S3, kind=BASE_KIND, reason=plan.refused)
        metrics.retention_refused.labels(BASE_KIND, S3).inc()
        report.refused.append(f"{S3}: recovery window: {plan.refused}")
    for decision in plan.bases:
        if decision.manifest.file not in problems:  # reported as unusable by the caller already
            kept_by = () if decision.delete else ("refused",) if plan.refused else (WINDOW_RULE,)
            carry_out(Decision(decision.manifest, decision.action, decision.reason, kept_by=kept_by))
    wal = [_wal_unless_locked(decision, bucket, files[decision.name][0], now, report) if decision.delete else decision
           for decision in plan.wal]
    _report_wal(wal, S3, report)
    for decision in wal:
        if not decision.delete or dry_run:
            continue
        try:
            for key in files[decision.name]:
                bucket.delete_in_folder(WAL_FOLDER, key)
        except S3_ERRORS + (OffsiteError,) as error:
            log.error("retention_delete_failed", location=S3, key=files[decision.name][0], error=describe(error))
            report.errors.append(f"{files[decision.name][0]}: {describe(error)}")
            continue
        metrics.retention_deleted.labels(WAL_KIND, S3).inc()


def _wal_unless_locked(decision: WalDecision, bucket: Bucket, key: str, now: datetime,
                       report: SweepReport) -> WalDecision:
    """The decision, or KEEP while ``key`` (the name's record, uploaded after its data and so
    locked the longest) is under S3 Object Lock retention, or its retention cannot be read."""
    if not bucket.object_lock_days:
        return decision
    from daemon.storage.s3 import S3_ERRORS, describe  # boto3's import time: only with S3

    try:
        until = bucket.locked_until(key)
    except S3_ERRORS as error:
        report.errors.append(f"{key}: its Object Lock retention cannot be read: {describe(error)}")
        return WalDecision(decision.name, KEEP, "its Object Lock retention cannot be read")
    if until is None or until <= now:
        return decision
    return WalDecision(decision.name, KEEP, f"S3 Object Lock until {until.isoformat(' ', 'minutes')}")
