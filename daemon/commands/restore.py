"""`pgbackup restore full|database|table`: select a backup, take the backup lock, restore, report."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from daemon.commands import Handler, point_in_time
from daemon.commands.locking import command_lock
from daemon.identity import this_instance
from daemon.restore.fetch import candidates, ensure_local
from daemon.restore.restorer import Restorer
from daemon.restore.selection import (
    Choice,
    Selected,
    SelectionError,
    contains_database,
    contains_table,
    owned_candidates,
    parse_before,
    select_backup,
    with_other_installs,
)
from daemon.settings import Settings
from daemon.sources.connect import connect

RESTORE_EPILOG = """\
examples:
  pgbackup restore full --latest --yes                  into an empty server (runbook scenario 1)
  pgbackup restore database authdb --before "2025-10-15 14:00" --into authdb_temp
  pgbackup restore database authdb --latest --yes       drop authdb and restore it from its newest backup
  pgbackup restore full --from /backups/backup_before_migration_20251015_120000.sql.gz --force --yes

A database is restored into a staging database, checked, and only then swapped in: a
failed restore leaves the target as it was. Dropping anything needs confirmation (typed on
a terminal, --yes otherwise). Times for --before are in TZ.
"""


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Handler]:
    restore = subparsers.add_parser(
        "restore", help="restore a backup: the whole server, one database or one table",
        description="Restore from a backup with a manifest, stop at the first SQL error, verify the result.",
        epilog=RESTORE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = restore.add_subparsers(dest="what", required=True, metavar="WHAT")
    full = what.add_parser("full", help="a full (pg_dumpall) backup into an empty server")
    full.add_argument("--force", action="store_true",
                      help="restore even though the server has databases: the backup's databases are dropped first")
    database = what.add_parser("database", help="one database, from its own dump or from a full backup")
    database.add_argument("name", help="the database in the backup")
    database.add_argument("--into", metavar="OTHER", help="restore under this name instead (e.g. authdb_temp)")
    table = what.add_parser("table", help="one table from a custom or directory backup")
    table.add_argument("database", help="the database the table belongs to")
    table.add_argument("table", help="TABLE or SCHEMA.TABLE")
    table.add_argument("--into", metavar="OTHER",
                       help="restore the table (definition and rows) into this database instead of replacing its rows")
    for parser in (full, database, table):
        _selection_arguments(parser)
        parser.add_argument("--yes", action="store_true", help="confirm destructive steps without asking")
    point_in_time.add_parser(what)

    return {"restore": command_restore}


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--latest", action="store_true", help="the newest backup that contains it")
    group.add_argument("--before", metavar="'YYYY-mm-dd HH:MM'",
                       help="the newest backup taken before this time (in TZ)")
    group.add_argument("--from", dest="from_path", type=Path, metavar="PATH", help="this artifact")
    parser.add_argument("--instance", metavar="NAME",
                        help="choose among the backups of this install (default: this install's own)")


def command_restore(settings: Settings, args: argparse.Namespace) -> int:
    if args.what == "point-in-time":
        return point_in_time.command_point_in_time(settings, args)
    choice = Choice(
        latest=args.latest,
        before=parse_before(args.before, settings.timezone) if args.before else None,
        path=args.from_path,
        now=datetime.now(settings.timezone),
    )
    with command_lock(settings, f"restore {args.what}", read_only_ok=True):
        return _restore_locked(settings, args, choice)


def _restore_locked(settings: Settings, args: argparse.Namespace, choice: Choice) -> int:
    directory = settings.backup_dir
    manifests, others = None, []
    if not choice.path:
        manifests, others = owned_candidates(candidates(settings), this_instance(settings, create=False),
                                             args.instance)
    if args.what == "full":
        wanted, description = (lambda m: m.kind in ("full", "pre_migration")), "the whole server"
    elif args.what == "database":
        wanted, description = (lambda m: contains_database(m, args.name)), f"database {args.name!r}"
    else:
        wanted = (lambda m: contains_table(m, args.database) and m.format in ("custom", "directory")
                  and (m.kind == "database" or _has_table(m.tables, args.table)))
        description = f"table {args.table!r} of database {args.database!r}"
    try:
        selected = select_backup(directory, choice, wanted, description, manifests, settings.signing_key)
    except SelectionError as error:
        raise with_other_installs(error, others, wanted) from None
    for future in selected.skipped_future:
        print(f"pgbackup: warning: skipped {future.file}: it is dated in the future "
              f"({future.started_at.isoformat(' ')}), taken while the clock was wrong; use --from to restore it",
              file=sys.stderr)
    if selected.manifest.encrypted:
        settings.decryption.identities(selected.manifest.file)  # exit 2 naming ENCRYPT_IDENTITY_FILE, before anything
    if not choice.path:
        selected = Selected(selected.manifest, ensure_local(settings, selected.manifest))
    print(f"pgbackup: restoring from {selected.path} (taken {selected.manifest.started_at.isoformat(' ')})",
          file=sys.stderr)
    restorer = _restorer(settings, args.yes)
    if args.what == "full":
        report = restorer.full(selected, force=args.force)
    elif args.what == "database":
        report = restorer.database(selected, args.name, args.into)
    else:
        report = restorer.table(selected, args.database, args.table, args.into)
    print(report.summary())
    return 0


def _restorer(settings: Settings, yes: bool) -> Restorer:
    return Restorer(
        connect(settings).server, jobs=settings.restore_jobs, yes=yes,
        progress_interval=settings.progress_interval_seconds, temp_root=settings.backup_dir,
        decryption=settings.decryption,
    )


def _has_table(tables: list[str], table: str) -> bool:
    return table in tables or f"public.{table}" in tables or table.removeprefix("public.") in tables
