"""`pgbackup backup WHAT`: take a backup now, print each artifact's path, exit 1 if any part failed."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta

from daemon.backup.outcome import RunOutcome
from daemon.commands import Handler
from daemon.errors import PgBackupError
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.volumes.snapshot import run_volume_snapshot
from daemon.wal.base import run_base_backup

BACKUP_CHOICES = {
    "full": "pg_dumpall of the whole server (roles, globals, every database) -> backup_all_*.sql.gz",
    "databases": "pg_dump of each database (BACKUP_DATABASES, or every one) -> <db>_*.dump",
    "database": "pg_dump of one database: pgbackup backup database NAME",
    "tables": "the BACKUP_TABLES selections, one artifact per database",
    "pre-migration": "a full backup kept forever -> backup_before_migration_*.sql.gz",
    "volume": "a snapshot of VOLUME_NAME, POSTGRES_CONTAINER stopped meanwhile -> postgres_volume_*.tar.gz",
    "base": "pg_basebackup of the cluster, for point-in-time recovery (docs/pitr.md) -> base_*.tar.gz",
}


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Handler]:
    backup = subparsers.add_parser(
        "backup", help="take a backup now and print the artifact paths",
        description="Take one backup now, print each artifact's path, exit non-zero if any part failed.\n\n"
        + "\n".join(f"  {name:14} {text}" for name, text in BACKUP_CHOICES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backup.add_argument("what", choices=list(BACKUP_CHOICES), metavar="WHAT",
                        help="one of: " + ", ".join(BACKUP_CHOICES))
    backup.add_argument("name", nargs="?", help="the database, for 'backup database NAME'")
    backup.add_argument("--no-wait", action="store_true",
                        help="fail at once (exit 3) instead of waiting when another backup is running")
    return {"backup": command_backup}


def command_backup(settings: Settings, args: argparse.Namespace) -> int:
    request = args.what.replace("-", "_")
    if request == "database" and not args.name:
        raise PgBackupError("'backup database' needs the database name: pgbackup backup database NAME")
    if request != "database" and args.name:
        raise PgBackupError(f"'backup {args.what}' takes no name")
    if request == "tables" and not settings.backup_tables:
        raise PgBackupError("BACKUP_TABLES is empty: set e.g. BACKUP_TABLES='authdb:users;admindb:documents'")
    now = datetime.now(settings.timezone)
    health = HealthState(now, timedelta(hours=settings.backup_max_age_hours))
    # A backup taken by hand gets what a scheduled one gets: run log, offsite copy,
    # notification and the retention sweep after success. Imported here: the features bring
    # boto3 (about 0.4 s of import time) that the other verbs need not pay.
    from daemon.service import equipped_runner

    runner, _ = equipped_runner(settings, Metrics(), health, cancel=getattr(args, "cancel", None))
    if request == "volume":
        return _report(run_volume_snapshot(runner, settings, wait=not args.no_wait), settings)
    if request == "base":
        return _report(run_base_backup(runner, settings, wait=not args.no_wait), settings)
    outcome = runner.run(request, args.name, wait=not args.no_wait)
    return _report(outcome, settings)


def _report(outcome: RunOutcome, settings: Settings) -> int:
    for manifest in outcome.artifacts:
        print(settings.backup_dir / manifest.file)
    for failure in outcome.failures:
        print(f"pgbackup: {failure.kind} backup of {failure.target} failed: {failure.error}", file=sys.stderr)
    return 0 if outcome.ok else 1
