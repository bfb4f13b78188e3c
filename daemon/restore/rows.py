"""Copying lost rows back from a restored copy of a database (runbook scenario 2).

Only rows whose primary key is missing in the target are inserted, all in one
transaction: rows that still exist (or were changed since the backup) are never
overwritten, and a failure changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from daemon.errors import PgBackupError
from daemon.restore.base import quote_ident, quote_literal, split_table
from daemon.restore.feed import feed_command
from daemon.restore.triggers import paused_triggers
from daemon.sources.postgres import PostgresServer, conninfo_dbname

STAGING_TABLE = "pgbackup_recovered_rows"


@dataclass
class RecoveredRows:
    table: str
    before: int
    after: int

    @property
    def inserted(self) -> int:
        return self.after - self.before


def insertable_columns(server: PostgresServer, database: str, schema: str, name: str) -> list[str]:
    """The table's columns in ``database`` by name (generated columns left out: they are computed).

    Rows are copied by column name, not by position: a migration that dropped and re-added a
    column changes the order, and the restored copy still has the old one.
    """
    sql = (
        "SELECT quote_ident(attname) FROM pg_attribute "
        f"WHERE attrelid = to_regclass({quote_literal(_qualified(schema, name))}) AND attnum > 0 "
        "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
    )
    return server.query(sql, database)


def primary_key_columns(server: PostgresServer, database: str, schema: str, name: str) -> list[str]:
    sql = (
        "SELECT quote_ident(a.attname) FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        f"WHERE i.indisprimary AND i.indrelid = to_regclass({quote_literal(_qualified(schema, name))}) "
        "ORDER BY array_position(i.indkey, a.attnum)"
    )
    return server.query(sql, database)


def recover_rows(
    server: PostgresServer, database: str, table: str, source_database: str, where: str | None = None
) -> RecoveredRows:
    """Insert the rows of ``source_database``'s table that ``database``'s table lacks."""
    schema, name = split_table(table)
    qualified = _qualified(schema, name)
    keys = primary_key_columns(server, database, schema, name)
    if not keys:
        raise PgBackupError(
            f"table {qualified} in {database!r} has no primary key, so missing rows cannot be told apart; "
            "copy them by hand as docs/runbook.md shows"
        )
    columns = ", ".join(insertable_columns(server, database, schema, name))
    selection = f"SELECT {columns} FROM {qualified}" + (f" WHERE {where}" if where else "")
    export = server.tool(
        "psql", "-X", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1", f"--dbname={conninfo_dbname(source_database)}",
        f"--command=COPY ({selection}) TO STDOUT",
    )
    before = _count(server, database, qualified)
    matching = " AND ".join(f"t.{key} = r.{key}" for key in keys)
    pause, resume = paused_triggers(server, database, qualified)  # the rows come back as they were
    head = (
        f"CREATE TEMP TABLE {STAGING_TABLE} (LIKE {qualified}) ON COMMIT DROP;\n"
        f"COPY {STAGING_TABLE} ({columns}) FROM STDIN;\n"
    ).encode()
    tail = (
        "\\.\n"
        f"{pause}"
        f"INSERT INTO {qualified} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {STAGING_TABLE} r "
        f"WHERE NOT EXISTS (SELECT 1 FROM {qualified} t WHERE {matching});\n"
        f"{resume}"
    ).encode()
    importer = server.tool(
        "psql", "-X", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1", "--single-transaction",
        f"--dbname={conninfo_dbname(database)}",
    )
    feed_command(server, importer, _exported_rows_framed(server, export, head, tail))
    return RecoveredRows(qualified, before, _count(server, database, qualified))


def _exported_rows_framed(server: PostgresServer, export: list[str], head: bytes, tail: bytes) -> Iterator[bytes]:
    """``head``, the export's rows, then ``tail`` (the INSERT) only once the export has exited 0.

    An export that fails part-way (a --where that errors on some row) raises here instead,
    which stops the importer before the INSERT: its transaction rolls back, nothing changes.
    """
    yield head
    with server.run_stream(export) as rows:
        yield from rows
    yield tail


def _count(server: PostgresServer, database: str, qualified: str) -> int:
    return int(server.query(f"SELECT count(*) FROM {qualified}", database)[0])


def _qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"

