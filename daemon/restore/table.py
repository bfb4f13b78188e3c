"""Restoring one table from a custom or directory archive: its rows replaced in place in one
transaction, or its definition and rows copied into another database."""

from __future__ import annotations

import time

from daemon.restore.artifacts import ArtifactReader
from daemon.restore.base import Confirm, RestoreReport, quote_ident, require, require_backup_of, split_table
from daemon.restore.left_out import rows_left_out
from daemon.restore.selection import Selected
from daemon.restore.target import TargetServer
from daemon.restore.triggers import paused_triggers
from daemon.sources.postgres import conninfo_dbname


def restore_table(
    server: TargetServer, artifacts: ArtifactReader, confirm: Confirm, selected: Selected, database: str,
    table: str, into: str | None = None,
) -> RestoreReport:
    """One table: its rows replaced in ``database``, or definition and rows into ``into``."""
    manifest = selected.manifest
    require(
        manifest.format in ("custom", "directory"),
        f"{manifest.file} is a plain SQL dump; restore one table from a custom or directory backup, or "
        f"restore the database with --into and copy the table from there",
    )
    require_backup_of(manifest, database)
    require(not rows_left_out(manifest, table), f"{manifest.file} has no rows of {database}.{table}: "
            "EXCLUDE_TABLE_DATA left them out (restore the database to get the table's definition)")
    schema, name = split_table(table)
    qualified = f"{quote_ident(schema)}.{quote_ident(name)}"
    started = time.monotonic()
    artifacts.check(selected)
    target = into or database
    report = RestoreReport(f"table {qualified} into database {target!r}", manifest.file, databases=[target])
    with artifacts.archive_next_to_server(selected) as archive:
        require(artifacts.has_table_data(archive, schema, name), f"{manifest.file} has no table {schema}.{name}")
        if into:
            table_into(server, archive, target, schema, name, qualified)
        else:
            step = (f"delete every row of table {qualified} in database {target!r} on {server.where()} "
                    f"and load the rows from {manifest.file}")
            confirm([step])
            table_rows_replaced(server, archive, target, schema, name, qualified)
    require(server.table_exists(target, qualified), f"table {qualified} is missing in {target!r} after the restore")
    report.tables_checked = 1
    report.seconds = time.monotonic() - started
    return report


def table_into(server: TargetServer, archive: str, target: str, schema: str, name: str, qualified: str) -> None:
    """The table's definition and rows into ``target`` (created if missing), where it must not exist yet."""
    if target not in server.all_databases():
        server.create_database(target)
    require(not server.table_exists(target, qualified), f"table {qualified} already exists in {target!r}")
    server.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}", target)
    server.run_tool("pg_restore", "--exit-on-error", "--single-transaction", f"--schema={schema}",
                    f"--table={name}", f"--dbname={conninfo_dbname(target)}", archive)


def table_rows_replaced(server: TargetServer, archive: str, target: str, schema: str, name: str,
                        qualified: str) -> None:
    """TRUNCATE and the archive's rows in one transaction: all of it, or nothing changes. The
    table's user triggers are held off meanwhile (daemon.restore.triggers)."""
    pg_restore = server.postgres.tool("pg_restore")[0]
    pause, resume = paused_triggers(server.postgres, target, qualified)
    script = (
        'archive="$1"; pg_restore="$2"; shift 2; '
        '{ printf "%s\\n" "$PGBACKUP_BEFORE"; '
        '"$pg_restore" --data-only --schema="$PGBACKUP_SCHEMA" --table="$PGBACKUP_TABLE" --file=- "$archive" '
        '|| printf "%s\\n" "$PGBACKUP_FAILED"; printf "%s\\n" "$PGBACKUP_AFTER"; } | "$@"'
    )
    env = {
        **server.postgres.environment(),
        "PGBACKUP_BEFORE": f"{pause}TRUNCATE ONLY {qualified};",
        "PGBACKUP_AFTER": resume,
        "PGBACKUP_SCHEMA": schema,
        "PGBACKUP_TABLE": name,
        "PGBACKUP_FAILED": "\\.\nDO $$ BEGIN RAISE EXCEPTION 'pg_restore failed: nothing was changed'; END $$;",
    }
    argv = ["sh", "-c", script, "pgbackup-restore-table", archive, pg_restore,
            *server.psql(target, single_transaction=True)]
    server.postgres.transport.run(argv, env)
