"""`pgbackup prune [--dry-run]`: run the retention sweep now, or show what it would delete and why."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from daemon.commands import Handler
from daemon.housekeeping.prune import SweepReport, locked_sweep, sweep
from daemon.housekeeping.retention import DELETE
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Handler]:
    prune = subparsers.add_parser(
        "prune", help="apply the retention policy now (--dry-run: only show what would go and why)",
        description="Apply the retention policy to BACKUP_DIR, the S3 prefix and the run logs. Only backups "
        "with this daemon's manifest are considered; pre-migration backups and the newest "
        "RETENTION_MIN_KEEP backups of each kind and target are always kept; a backup is kept while its "
        "kind's day window or a GFS tier (RETENTION_KEEP_DAILY/WEEKLY/MONTHLY/YEARLY) keeps it. The dry run's "
        "KEPT BY column names the rules, e.g. 'window, daily 2026-12-01' or 'monthly 2026-10'. Base backups and the "
        "WAL archive follow the recovery window (PITR_WINDOW_DAYS) alone.",
    )
    prune.add_argument("--dry-run", action="store_true", help="delete nothing; print every decision and its reason")
    prune.add_argument("--no-wait", action="store_true", help="fail (exit 3) instead of waiting for a running backup")
    return {"prune": command_prune}


def command_prune(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(settings.timezone)
    if args.dry_run:
        report = sweep(settings, Metrics(), now, dry_run=True)
    else:
        report = locked_sweep(settings, Metrics(), now, wait=not args.no_wait)
    print(format_report(report, args.dry_run))
    for refusal in report.refused:
        print(f"pgbackup: {refusal}", file=sys.stderr)
    for unusable in report.unusable:
        print(f"pgbackup: unusable backup, kept and not counted by retention: {unusable}", file=sys.stderr)
    for error in report.errors:
        print(f"pgbackup: prune: {error}", file=sys.stderr)
    return 1 if report.refused or report.errors or report.unusable else 0


def format_report(report: SweepReport, dry_run: bool) -> str:
    verb = "WOULD DELETE" if dry_run else "DELETED"
    rows = [("ACTION", "WHERE", "KIND", "TARGET", "STARTED", "FILE", "KEPT BY", "REASON")]
    for item in report.items:
        rows.append((
            verb if item.action == DELETE else "keep",
            item.location,
            item.kind,
            item.target,
            item.started_at.strftime("%Y-%m-%d %H:%M:%S") if item.started_at else "-",
            item.file,
            ", ".join(item.kept_by) or "-",
            item.reason,
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines = ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]) for row in rows]
    deleted = len(report.deleted)
    lines.append(f"{deleted} {'would be deleted' if dry_run else 'deleted'}, {len(report.items) - deleted} kept")
    return "\n".join(lines)
