"""What dumps leave out: EXCLUDE_DATABASES, EXCLUDE_TABLE_DATA and BACKUP_SCHEMAS as pg_dump and
pg_dumpall options, and as the record the manifest keeps of them (``Manifest.excluded``).

- EXCLUDE_DATABASES: the per-database run dumps every database but these (when BACKUP_DATABASES
  is empty), and the full backup passes them to ``pg_dumpall --exclude-database`` (PostgreSQL 12+).
- EXCLUDE_TABLE_DATA: ``pg_dump --exclude-table-data`` for that database's own dumps: the table's
  definition is kept, its rows are left out. pg_dumpall has no such option: the full backup
  keeps every row.
- BACKUP_SCHEMAS: ``pg_dump --schema`` (with --strict-names, so a schema that does not exist
  fails the dump instead of leaving it empty) for that database's own dumps.

Names are exact, never patterns: each is double-quoted for pg_dump's pattern syntax, so
upper case, dots, ``*`` and ``?`` in a name mean themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from daemon.settings import Settings

# Keys of Manifest.excluded; a key is present only when something was left out that way.
DATABASES = "databases"  # whole databases not in a full backup
TABLE_DATA = "table_data"  # tables of the dumped database whose rows were left out
ONLY_SCHEMAS = "only_schemas"  # the dumped database's schemas that were kept; every other one was left out


@dataclass(frozen=True)
class LeftOut:
    """What one artifact leaves out."""

    databases: tuple[str, ...] = ()
    table_data: tuple[str, ...] = ()
    only_schemas: tuple[str, ...] = ()

    def as_record(self) -> dict[str, list[str]]:
        """The manifest's ``excluded``: only the kinds of exclusion that apply."""
        record = {DATABASES: self.databases, TABLE_DATA: self.table_data, ONLY_SCHEMAS: self.only_schemas}
        return {key: list(names) for key, names in record.items() if names}

    def pg_dump_options(self) -> tuple[str, ...]:
        schemas = (("--strict-names", *(f"--schema={name_pattern(s)}" for s in self.only_schemas))
                   if self.only_schemas else ())
        return schemas + tuple(f"--exclude-table-data={table_pattern(table)}" for table in self.table_data)

    def pg_dumpall_options(self) -> tuple[str, ...]:
        return tuple(f"--exclude-database={name_pattern(database)}" for database in self.databases)


@dataclass(frozen=True)
class Exclusions:
    """The settings' exclusions, asked per artifact."""

    databases: tuple[str, ...] = ()
    table_data: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    schemas: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Exclusions:
        return cls(tuple(settings.exclude_databases), settings.exclude_table_data, settings.backup_schemas)

    def kept(self, databases: Sequence[str]) -> list[str]:
        """``databases`` without the excluded ones, in their order."""
        return [database for database in databases if database not in self.databases]

    def of_cluster(self) -> LeftOut:
        """What a full backup (pg_dumpall) leaves out."""
        return LeftOut(databases=self.databases)

    def of_database(self, database: str) -> LeftOut:
        """What one database's own dump leaves out."""
        return LeftOut(table_data=tuple(self.table_data.get(database, ())),
                       only_schemas=tuple(self.schemas.get(database, ())))


def missing_tables_sql(tables: Sequence[str]) -> str:
    """A query listing those of ``tables`` (as EXCLUDE_TABLE_DATA names them) that the database
    does not have: pg_dump matches such a name silently against nothing."""
    literals = ", ".join("'" + table_pattern(table).replace("'", "''") + "'" for table in tables)
    names = ", ".join("'" + table.replace("'", "''") + "'" for table in tables)
    return (f"SELECT name FROM unnest(ARRAY[{names}]::text[], ARRAY[{literals}]::text[]) AS t(name, pattern) "
            "WHERE to_regclass(pattern) IS NULL")


def name_pattern(name: str) -> str:
    """A pg_dump pattern that matches exactly ``name``: double-quoted, inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def table_pattern(table: str) -> str:
    """``schema.table`` or ``table`` (schema public), as restores read it, as an exact pattern."""
    schema, dot, name = table.partition(".")
    if not (dot and schema and name):
        schema, name = "public", table
    return f"{name_pattern(schema)}.{name_pattern(name)}"
