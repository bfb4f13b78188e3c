"""What each kind of backup dumps: one DumpPlan per artifact, built from the settings and
the server's list of databases. Pure apart from that list, which the caller passes in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from daemon import naming
from daemon.backup.exclusions import Exclusions, LeftOut
from daemon.sources.postgres import PostgresServer, conninfo_dbname

# Dumps a directory-format archive to a temporary directory next to the tool, then
# streams it as a tar; the directory is removed however the script ends.
DIRECTORY_AS_TAR_SCRIPT = (
    'set -e; db="$1"; shift; '
    f'dir=$(mktemp -d "${{TMPDIR:-/tmp}}/{naming.DUMP_SCRATCH_PREFIX}XXXXXX"); '
    'trap \'rm -rf "$dir"\' EXIT; trap \'exit 143\' TERM INT; '
    '"$@" --file="$dir/dump" "$db"; '
    'tar -C "$dir" -cf - dump'
)


@dataclass(frozen=True)
class DumpPlan:
    kind: str  # full | database | table | pre_migration
    target: str  # "all" for full and pre_migration, else the database name
    name: Callable[[datetime], str]  # the artifact's file name for a start time
    argv: tuple[str, ...]  # produces the artifact's bytes (before gzip) on stdout
    dump_format: str  # plain | custom | directory
    gzip: bool  # compress in the sidecar
    keep_forever: bool = False
    databases: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    # Prints how the database is created and set up (owner, encoding, locale, settings, comment,
    # privileges) for the manifest: a plain database dump is taken without --create, so that it
    # loads into a database of any name, and would otherwise carry none of that.
    definition_argv: tuple[str, ...] = ()
    excluded: LeftOut = LeftOut()  # recorded in the manifest (backup/exclusions.py)

    @property
    def compression(self) -> str:
        if self.gzip:
            return "gzip"
        return "pg_dump" if self.dump_format in ("custom", "directory") else "none"


def plan_full(server: PostgresServer, databases: Sequence[str], *, pre_migration: bool = False,
              exclusions: Exclusions = Exclusions()) -> list[DumpPlan]:
    """pg_dumpall of every database but the excluded ones (``databases``: the ones it dumps)."""
    left_out = exclusions.of_cluster()
    return [
        DumpPlan(
            kind="pre_migration" if pre_migration else "full",
            target="all",
            name=naming.pre_migration_name if pre_migration else naming.full_backup_name,
            argv=tuple(server.tool("pg_dumpall", *left_out.pg_dumpall_options())),
            dump_format="plain",
            gzip=True,
            keep_forever=pre_migration,
            databases=tuple(exclusions.kept(databases)),
            excluded=left_out,
        )
    ]


def plan_databases(
    server: PostgresServer, databases: Sequence[str], dump_format: str, level: int, jobs: int,
    exclusions: Exclusions = Exclusions(),
) -> list[DumpPlan]:
    return [plan_database(server, database, dump_format, level, jobs, exclusions.of_database(database))
            for database in databases]


def plan_database(
    server: PostgresServer, database: str, dump_format: str, level: int, jobs: int, left_out: LeftOut
) -> DumpPlan:
    return DumpPlan(
        kind="database",
        target=database,
        name=_namer(naming.database_backup_name, database, dump_format),
        argv=_pg_dump_argv(server, database, dump_format, level, jobs, left_out.pg_dump_options()),
        dump_format=dump_format,
        gzip=dump_format == "plain",
        databases=(database,),
        definition_argv=_definition_argv(server, database) if dump_format == "plain" else (),
        excluded=left_out,
    )


def plan_tables(
    server: PostgresServer, selection: dict[str, tuple[str, ...]], dump_format: str, level: int, jobs: int
) -> list[DumpPlan]:
    plans = []
    for database, tables in selection.items():
        table_options = ["--strict-names", *(f"--table={table}" for table in tables)]
        plans.append(
            DumpPlan(
                kind="table",
                target=database,
                name=_namer(naming.table_backup_name, database, dump_format),
                argv=_pg_dump_argv(server, database, dump_format, level, jobs, table_options),
                dump_format=dump_format,
                gzip=dump_format == "plain",
                databases=(database,),
                tables=tuple(tables),
            )
        )
    return plans


def _pg_dump_argv(
    server: PostgresServer, database: str, dump_format: str, level: int, jobs: int,
    extra: Sequence[str] = (),
) -> tuple[str, ...]:
    if dump_format == "plain":
        return tuple(server.tool("pg_dump", "--format=plain", *extra, conninfo_dbname(database)))
    if dump_format == "custom":
        return tuple(
            server.tool("pg_dump", "--format=custom", f"--compress={level}", *extra, conninfo_dbname(database))
        )
    if dump_format == "directory":
        dump = server.tool("pg_dump", "--format=directory", f"--jobs={jobs}", f"--compress={level}", *extra)
        return ("sh", "-c", DIRECTORY_AS_TAR_SCRIPT, "pgbackup-dump", conninfo_dbname(database), *dump)
    raise ValueError(f"unknown dump format {dump_format!r}")


def _definition_argv(server: PostgresServer, database: str) -> tuple[str, ...]:
    """The database's CREATE DATABASE and its own settings, without a single object of any schema."""
    return tuple(server.tool("pg_dump", "--create", "--schema-only", "--exclude-schema=*",
                             conninfo_dbname(database)))


def _namer(function: Callable[[str, str, datetime], str], database: str, dump_format: str):
    def name(moment: datetime) -> str:
        return function(database, dump_format, moment)

    return name
