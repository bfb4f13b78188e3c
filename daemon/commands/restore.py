"""`pgbackup restore ...`, `pgbackup recover-rows ...` and `pgbackup verify ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daemon.commands.locking import command_lock
from daemon.errors import PgBackupError
from daemon.restore.confirm import confirm
from daemon.restore.engine import Restorer, quote_ident
from daemon.restore.fetch import candidates, ensure_local
from daemon.restore.rows import recover_rows
from daemon.restore.selection import (
    Choice,
    Selected,
    contains_database,
    contains_table,
    parse_before,
    select_backup,
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


def add_commands(subparsers) -> dict:
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

    rows = subparsers.add_parser(
        "recover-rows", help="copy rows missing in a table back from a restored copy of its database",
        description="Insert the rows of SOURCE's table whose primary key is missing in DATABASE's table, in one "
        "transaction; existing rows are never changed.",
    )
    rows.add_argument("database", help="the database that lost rows, e.g. authdb")
    rows.add_argument("table", help="TABLE or SCHEMA.TABLE")
    rows.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                      help="the restored copy, e.g. authdb_temp")
    rows.add_argument("--where", help="only rows matching this SQL condition, e.g. \"id BETWEEN 100 AND 200\"")
    rows.add_argument("--drop-source", action="store_true", help="drop SOURCE afterwards (needs confirmation)")
    rows.add_argument("--yes", action="store_true", help="confirm dropping SOURCE without asking")

    verify = subparsers.add_parser(
        "verify", help="prove backups restorable: checksum, decompression, restore into a throwaway container",
        description="Check an artifact (or, by default, the newest full backup and each database's newest dump): "
        "sha256, complete decompression, then a restore into a throwaway PostgreSQL container compared with the "
        "manifest.",
    )
    verify.add_argument("artifact", nargs="?", type=Path, help="the artifact to verify (default: --latest)")
    verify.add_argument("--latest", action="store_true",
                        help="the newest full backup and each database's newest dump (the default)")
    verify.add_argument("--no-restore", action="store_true", help="only the checks that need no container")
    return {"restore": command_restore, "recover-rows": command_recover_rows, "verify": command_verify}


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--latest", action="store_true", help="the newest backup that contains it")
    group.add_argument("--before", metavar="'YYYY-mm-dd HH:MM'",
                       help="the newest backup taken before this time (in TZ)")
    group.add_argument("--from", dest="from_path", type=Path, metavar="PATH", help="this artifact")


def command_restore(settings: Settings, args: argparse.Namespace) -> int:
    choice = Choice(
        latest=args.latest,
        before=parse_before(args.before, settings.timezone) if args.before else None,
        path=args.from_path,
    )
    with command_lock(settings, f"restore {args.what}", read_only_ok=True):
        return _restore_locked(settings, args, choice)


def _restore_locked(settings: Settings, args: argparse.Namespace, choice: Choice) -> int:
    directory = settings.backup_dir
    manifests = None if choice.path else candidates(settings)
    if args.what == "full":
        wanted, description = (lambda m: m.kind in ("full", "pre_migration")), "the whole server"
    elif args.what == "database":
        wanted, description = (lambda m: contains_database(m, args.name)), f"database {args.name!r}"
    else:
        wanted = (lambda m: contains_table(m, args.database) and m.format in ("custom", "directory")
                  and (m.kind == "database" or _has_table(m.tables, args.table)))
        description = f"table {args.table!r} of database {args.database!r}"
    selected = select_backup(directory, choice, wanted, description, manifests)
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


def command_recover_rows(settings: Settings, args: argparse.Namespace) -> int:
    if args.source == args.database:
        raise PgBackupError("--from must name the restored copy, not the database itself")
    server = connect(settings).server
    result = recover_rows(server, args.database, args.table, args.source, args.where)
    print(f"recovered {result.inserted} rows into {result.table} of {args.database!r} from {args.source!r} "
          f"({result.before} rows before, {result.after} after)")
    if args.drop_source:
        confirm([f"drop database {args.source!r}"], args.yes)
        server.query(f"DROP DATABASE {quote_ident(args.source)} WITH (FORCE)")
        print(f"dropped database {args.source!r}")
    return 0


def command_verify(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.verify import verify_artifact, verify_latest

    if args.artifact and args.latest:
        raise PgBackupError("give either an ARTIFACT or --latest, not both")
    if args.artifact:
        results = [verify_artifact(settings, args.artifact, restore=not args.no_restore)]
    else:
        results = verify_latest(settings, restore=not args.no_restore)
    for result in results:
        print(result.summary())
    return 0 if all(result.ok for result in results) else 1


def _restorer(settings: Settings, yes: bool) -> Restorer:
    return Restorer(
        connect(settings).server, jobs=settings.restore_jobs, yes=yes,
        progress_interval=settings.progress_interval_seconds, temp_root=settings.backup_dir,
    )


def _has_table(tables: list[str], table: str) -> bool:
    return table in tables or f"public.{table}" in tables or table.removeprefix("public.") in tables
