"""Restoring one table from a custom or directory archive: its rows replaced in place in one
transaction, or its definition and rows copied into another database."""

from __future__ import annotations

import json
import time

from daemon.restore.artifacts import ArtifactReader
from daemon.restore.base import (
    Confirm,
    RestoreReport,
    quote_ident,
    quote_literal,
    require,
    require_backup_of,
    split_table,
)
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
        partitioned = not artifacts.has_table_data(archive, schema, name)
        holders = (partitions_with_rows(server, artifacts, archive, target, schema, name, manifest.file, into)
                   if partitioned else [(schema, name)])
        if into:
            table_into(server, archive, target, schema, name, qualified)
        else:
            refuse_referenced(server, target, qualified)
            confirm([replace_step(server, target, qualified, manifest.file, holders if partitioned else None)])
            table_rows_replaced(server, archive, target, qualified, holders, partitioned)
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


# The leaf partitions of a partitioned table, as JSON ["schema", "name"] (a name may hold a newline).
_LEAF_PARTITIONS_SQL = (
    "SELECT json_build_array(n.nspname, c.relname)::text FROM pg_partition_tree(to_regclass({table})) t "
    "JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE t.isleaf AND c.relkind = 'r' ORDER BY 1"
)
_IS_PARTITIONED_SQL = "SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass({table})"


def partitions_with_rows(
    server: TargetServer, artifacts: ArtifactReader, archive: str, target: str, schema: str, name: str,
    file: str, into: str | None,
) -> list[tuple[str, str]]:
    """For a partitioned table (its rows are its partitions'): the target's leaf partitions, each
    to be emptied and loaded with the rows the archive has for it."""
    qualified = quote_literal(f"{quote_ident(schema)}.{quote_ident(name)}")
    require(artifacts.has_table_definition(archive, schema, name), f"{file} has no table {schema}.{name}")
    require(not into, f"{schema}.{name} is a partitioned table in {file}: --into copies one table; restore "
            "the database with --into and copy the table from there")
    require(server.query(_IS_PARTITIONED_SQL.format(table=qualified), target) == ["t"],
            f"{file} has {schema}.{name} as a partitioned table, but {target!r} has no partitioned table of that "
            "name; restore the database with --into and copy the table from there")
    leaves = [tuple(json.loads(row)) for row in server.query(_LEAF_PARTITIONS_SQL.format(table=qualified), target)]
    require(bool(leaves), f"{schema}.{name} in {target!r} has no partitions to load rows into")
    holders = [leaf for leaf in leaves if artifacts.has_table_data(archive, *leaf)]
    require(bool(holders), f"{file} has rows for none of the partitions of {schema}.{name} "
            f"({', '.join(f'{s}.{n}' for s, n in leaves)}); nothing was changed")
    return holders


# Other tables whose foreign keys point at the table (or one of its partitions), as JSON ["schema", "name"].
# pg_partition_tree gives no row for a table outside any partition tree: the table itself is added.
_REFERENCING_TABLES_SQL = (
    "WITH tree AS (SELECT to_regclass({table}) AS relid UNION SELECT relid FROM pg_partition_tree(to_regclass({table}))) "
    "SELECT DISTINCT json_build_array(n.nspname, c.relname)::text FROM pg_constraint k "
    "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE k.contype = 'f' AND k.confrelid IN (SELECT relid FROM tree) "
    "AND k.conrelid NOT IN (SELECT relid FROM tree) ORDER BY 1"
)


def refuse_referenced(server: TargetServer, target: str, qualified: str) -> None:
    """A table other tables' foreign keys point at cannot be emptied alone (TRUNCATE refuses, and
    CASCADE would empty them too): say so, and what works instead, before anything changes."""
    rows = server.query(_REFERENCING_TABLES_SQL.format(table=quote_literal(qualified)), target)
    referencing = [f"{schema}.{name}" for schema, name in (json.loads(row) for row in rows)]
    require(not referencing, f"table {qualified} in {target!r} is referenced by foreign keys of "
            f"{', '.join(referencing)}: its rows cannot be replaced alone (that would empty those tables too). "
            "Restore the database with --into and copy what you need from there, or bring deleted rows back with "
            "`pgbackup recover-rows`; nothing was changed")


def replace_step(server: TargetServer, target: str, qualified: str, file: str,
                 partitions: list[tuple[str, str]] | None) -> str:
    """What the confirmation names: the table, and for a partitioned one the partitions loaded."""
    step = f"delete every row of table {qualified} in database {target!r} on {server.where()}"
    if partitions is None:
        return f"{step} and load the rows from {file}"
    loaded = ", ".join(f"{schema}.{name}" for schema, name in partitions)
    return f"{step} (all its partitions) and load the rows of the partitions {loaded} from {file}"


def table_rows_replaced(server: TargetServer, archive: str, target: str, qualified: str,
                        holders: list[tuple[str, str]], partitioned: bool) -> None:
    """TRUNCATE and the archive's rows in one transaction: all of it, or nothing changes. The user
    triggers of each table that takes rows are held off meanwhile (daemon.restore.triggers). For a
    partitioned table the TRUNCATE empties every partition and ``holders`` are its partitions."""
    pg_restore = server.postgres.tool("pg_restore")[0]
    paused = [paused_triggers(server.postgres, target, f"{quote_ident(s)}.{quote_ident(n)}") for s, n in holders]
    truncate = f"TRUNCATE {qualified};" if partitioned else f"TRUNCATE ONLY {qualified};"
    # Each table's names travel in their own variables (PGBACKUP_SCHEMA_1, PGBACKUP_TABLE_1, ...):
    # any byte may be in a name, and only the number is ever part of the script.
    script = (
        'archive="$1"; pg_restore="$2"; count="$3"; shift 3; '
        '{ printf "%s\\n" "$PGBACKUP_BEFORE"; i=1; while [ "$i" -le "$count" ]; do '
        'eval "schema=\\$PGBACKUP_SCHEMA_$i; table=\\$PGBACKUP_TABLE_$i"; '
        '"$pg_restore" --data-only --schema="$schema" --table="$table" --file=- "$archive" '
        '|| { printf "%s\\n" "$PGBACKUP_FAILED"; break; }; i=$((i + 1)); done; '
        'printf "%s\\n" "$PGBACKUP_AFTER"; } | "$@"'
    )
    env = {
        **server.postgres.environment(),
        "PGBACKUP_BEFORE": "".join(pause for pause, _ in paused) + truncate,
        "PGBACKUP_AFTER": "".join(resume for _, resume in paused),
        "PGBACKUP_FAILED": "\\.\nDO $$ BEGIN RAISE EXCEPTION 'pg_restore failed: nothing was changed'; END $$;",
    }
    for number, (schema, name) in enumerate(holders, start=1):
        env[f"PGBACKUP_SCHEMA_{number}"], env[f"PGBACKUP_TABLE_{number}"] = schema, name
    argv = ["sh", "-c", script, "pgbackup-restore-table", archive, pg_restore, str(len(holders)),
            *server.psql(target, single_transaction=True)]
    server.postgres.transport.run(argv, env)
