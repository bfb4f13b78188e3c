"""`pgbackup recover-rows`: copy the rows a table lost back from a restored copy of its database."""

from __future__ import annotations

import argparse

from daemon.commands import Handler
from daemon.errors import PgBackupError
from daemon.restore.base import quote_ident
from daemon.restore.confirm import confirm
from daemon.restore.rows import recover_rows
from daemon.settings import Settings
from daemon.sources.connect import connect


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Handler]:
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

    return {"recover-rows": command_recover_rows}


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
