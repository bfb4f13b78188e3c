"""Restoring an artifact into a PostgreSQL server: a whole cluster, one database or one table.

Every restore stops at the first SQL error (psql ``ON_ERROR_STOP=1``, ``pg_restore
--exit-on-error``). A database is restored into a fresh staging database first, checked
against its manifest, and only then swapped in for the target: a broken or truncated
artifact leaves the target as it was.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from daemon.errors import PgBackupError
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.naming import RESTORE_SCRATCH_PREFIX
from daemon.progress import Progress
from daemon.restore import toc
from daemon.restore.confirm import confirm
from daemon.restore.feed import feed_command, make_temp_dir, put_stream, remove_temp_dir, single_file_tar
from daemon.restore.selection import Selected
from daemon.restore.streams import (
    DatabaseRename,
    check_sha256,
    create_database_options,
    database_section,
    database_statements,
    globals_section,
    gunzip,
    keep_password_of,
    read_chunks,
    skip_existing_roles,
    skip_existing_tablespaces,
    tablespace_locations,
)
from daemon.sources.docker_exec import DockerExecTransport
from daemon.sources.postgres import PostgresServer, conninfo_dbname

log = get_logger(__name__)

MAINTENANCE_DB = "postgres"
SYSTEM_DATABASES = ("postgres", "template0", "template1")
COUNT_BATCH = 100

_ROLES_SQL = "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'"
_TABLESPACES_SQL = "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')"
_USER_DATABASES_SQL = (
    "SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1') ORDER BY 1"
)
_TABLES_SQL = (
    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
)
# Objects a user made in postgres or template1 (not an extension's): a full backup restores its own
# copy of those two databases' objects into the existing databases, and stops at the first one
# that exists already. Extensions do not count: pg_dump writes CREATE EXTENSION IF NOT EXISTS
# (images such as PostGIS's install theirs into template1).
_USER_OBJECTS_SQL = """
SELECT kind || ' ' || name FROM (
  SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
         WHEN 'f' THEN 'foreign table' ELSE 'table' END, c.oid::regclass::text, c.oid, n.nspname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  UNION ALL
  SELECT 'function', p.oid::regprocedure::text, p.oid, n.nspname
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  UNION ALL
  SELECT 'type', t.oid::regtype::text, t.oid, n.nspname
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype IN ('e', 'd', 'r')
  UNION ALL
  SELECT 'schema', quote_ident(n.nspname), n.oid, n.nspname FROM pg_namespace n WHERE n.nspname <> 'public'
) AS o(kind, name, id, schema)
WHERE schema NOT IN ('pg_catalog', 'information_schema') AND schema !~ '^pg_(toast|temp_|toast_temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = o.id AND d.deptype = 'e')
ORDER BY 1 LIMIT 6
"""


class RestoreFailed(PgBackupError):
    """The restore stopped; the message says what is left where."""


class VerificationFailed(RestoreFailed):
    """The restored data does not match the manifest."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class RestoreReport:
    what: str
    source: str
    databases: list[str] = field(default_factory=list)
    tables_checked: int = 0
    rows_checked: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        checked = f"{self.tables_checked} tables present"
        if self.rows_checked:
            checked += f", row counts of {self.rows_checked} tables match the manifest"
        text = f"restored {self.what} from {self.source} in {self.seconds:.1f} s ({checked})"
        return "\n".join([text, *(f"note: {note}" for note in self.notes)])


@dataclass
class DatabaseDefinition:
    options: bytes | None  # what follows the name in the backup's CREATE DATABASE
    statements: list[bytes]  # owner, settings, comment, privileges, renamed to the staging database


@dataclass
class Restorer:
    server: PostgresServer
    jobs: int = 2
    yes: bool = False
    progress_stream: TextIO = field(default_factory=lambda: sys.stderr)
    progress_interval: float = 30.0
    # Where directory archives are unpacked for a local pg_restore (BACKUP_DIR, which has room
    # for them); the system's temporary directory when it is read-only.
    temp_root: Path | None = None
    confirm: Callable[[list[str], bool], None] = confirm

    # --- public operations -------------------------------------------------------------
    def full(self, selected: Selected, *, force: bool = False) -> RestoreReport:
        """A pg_dumpall backup into a server without user databases (or with, given --force)."""
        manifest = selected.manifest
        _require(selected.is_full, f"{manifest.file} is a {manifest.kind} backup, not a full one")
        started = time.monotonic()
        self._check(selected)
        present = self._user_databases()
        restored = [db for db in manifest.databases if db not in SYSTEM_DATABASES]
        clashing = [db for db in restored if db in present]
        if present and not force:
            raise RestoreFailed(
                f"the server already has databases ({', '.join(map(repr, present))}); a full restore goes into an "
                "empty server. Use 'restore database NAME' for one database, or --force to drop "
                f"{', '.join(map(repr, clashing)) or 'nothing'} and restore over the rest"
            )
        self._require_empty_default_databases(manifest)
        self.confirm([f"drop database {db!r} on {self._where()}" for db in clashing], self.yes)
        for database in clashing:
            self._drop_database(database)
        report = RestoreReport("the whole server", manifest.file, databases=restored)
        chunks = self._roles_made_safe(self._plain_stream(selected, f"restore {manifest.file}"), report.notes)
        log.info("restore_started", what="full", file=manifest.file, databases=restored)
        try:
            feed_command(self.server, self._psql(MAINTENANCE_DB), chunks)
        except PgBackupError as error:
            raise RestoreFailed(
                f"the full restore from {manifest.file} stopped at an error: {error}. The server now holds "
                f"whatever was restored before it: {', '.join(map(repr, self._user_databases())) or 'no databases'}"
            ) from None
        for database in restored:
            self._verify(manifest, database, database, report, listed=None)
        report.seconds = time.monotonic() - started
        log.info("restore_finished", what="full", file=manifest.file, seconds=round(report.seconds, 1))
        return report

    def globals_only(self, selected: Selected) -> None:
        """Only the roles and tablespaces of a full backup (for database dumps that refer to them)."""
        _require(selected.is_full, f"{selected.manifest.file} is not a full backup")
        self._check(selected)
        chunks = globals_section(self._plain_stream(selected, f"roles from {selected.manifest.file}"))
        feed_command(self.server, self._psql(MAINTENANCE_DB), self._roles_made_safe(chunks, notes=[]))

    def tablespace_locations(self, selected: Selected) -> list[str]:
        """The directories a full backup's tablespaces were in (read from its start only)."""
        _require(selected.is_full, f"{selected.manifest.file} is not a full backup")
        return tablespace_locations(self._plain_stream(selected, f"tablespaces of {selected.manifest.file}"))

    def database(self, selected: Selected, database: str, into: str | None = None) -> RestoreReport:
        """One database (from its own dump or from a full backup) into ``into`` or itself."""
        manifest = selected.manifest
        target = into or database
        _require(target not in SYSTEM_DATABASES, f"refusing to replace the system database {target!r}")
        if selected.is_full:
            _require(database in manifest.databases, f"{manifest.file} does not contain database {database!r}")
        else:
            _require(manifest.kind == "database", f"{manifest.file} is a {manifest.kind} backup, not a database one")
            _require_backup_of(manifest, database)
        started = time.monotonic()
        self._check(selected)
        exists = target in self._all_databases()
        steps = [f"drop database {target!r} on {self._where()} and replace it with {database!r} from {manifest.file}"]
        self.confirm(steps if exists else [], self.yes)
        staging = f"pgbackup_restore_{uuid.uuid4().hex[:12]}"
        rename = DatabaseRename(database, staging)
        report = RestoreReport(f"database {database!r} as {target!r}", manifest.file, databases=[target])
        log.info("restore_started", what="database", database=database, into=target, file=manifest.file)
        failed = f"The database {target!r} was not touched" if exists else "Nothing was created"
        with self._archive_next_to_server(selected) as archive:
            try:
                definition = self._database_definition(selected, database, rename, archive)
                self._create_database(staging, definition.options)
            except PgBackupError as error:
                raise RestoreFailed(f"restoring {database!r} from {manifest.file} failed: {error}. {failed}") from None
            try:
                listed = self._fill_database(selected, database, staging, rename, archive)
                self._verify(manifest, database, staging, report, listed)
                if definition.statements:
                    feed_command(self.server, self._psql(MAINTENANCE_DB, single_transaction=True),
                                 [b"".join(definition.statements)])
            except BaseException as error:
                self._drop_quietly(staging)
                if isinstance(error, PgBackupError):
                    raise RestoreFailed(f"restoring {database!r} from {manifest.file} failed: {error}. {failed}") from None
                raise
        self._swap_in(staging, target, exists)
        report.seconds = time.monotonic() - started
        log.info("restore_finished", what="database", database=target, seconds=round(report.seconds, 1))
        return report

    def table(self, selected: Selected, database: str, table: str, into: str | None = None) -> RestoreReport:
        """One table: its rows replaced in ``database``, or definition and rows into ``into``."""
        manifest = selected.manifest
        _require(
            manifest.format in ("custom", "directory"),
            f"{manifest.file} is a plain SQL dump; restore one table from a custom or directory backup, or "
            f"restore the database with --into and copy the table from there",
        )
        _require_backup_of(manifest, database)
        schema, name = split_table(table)
        qualified = f"{quote_ident(schema)}.{quote_ident(name)}"
        started = time.monotonic()
        self._check(selected)
        target = into or database
        report = RestoreReport(f"table {qualified} into database {target!r}", manifest.file, databases=[target])
        with self._archive_next_to_server(selected) as archive:
            _require(self._has_table_data(archive, schema, name), f"{manifest.file} has no table {schema}.{name}")
            if into:
                self._table_into(archive, target, schema, name, qualified)
            else:
                step = (f"delete every row of table {qualified} in database {target!r} on {self._where()} "
                        f"and load the rows from {manifest.file}")
                self.confirm([step], self.yes)
                self._table_rows_replaced(archive, target, schema, name, qualified)
        _require(self._table_exists(target, qualified), f"table {qualified} is missing in {target!r} after the restore")
        report.tables_checked = 1
        report.seconds = time.monotonic() - started
        return report

    # --- the steps ---------------------------------------------------------------------
    def _roles_made_safe(self, chunks: Iterable[bytes], notes: list[str]) -> Iterator[bytes]:
        """pg_dumpall output that neither re-creates existing roles or tablespaces nor changes the
        connecting role's password (notes say so)."""
        role = self.server.options.user

        def kept() -> None:
            notes.append(f"role {role!r} (the one pgbackup connects as) keeps its current password; "
                                "the password in the backup was not applied")

        def tablespace_kept(name: str) -> None:
            notes.append(f"tablespace {name!r} exists already and was kept with its current location")

        chunks = skip_existing_roles(chunks, self.server.query(_ROLES_SQL))
        chunks = skip_existing_tablespaces(chunks, self.server.query(_TABLESPACES_SQL), on_skipped=tablespace_kept)
        return keep_password_of(chunks, role, on_kept=kept)

    def _swap_in(self, staging: str, target: str, target_exists: bool) -> None:
        """Drop ``target`` and rename the verified ``staging`` database to it.

        A refused drop (a template database, prepared transactions) leaves ``target`` as it
        was and drops the staging copy; a failed rename, or an interruption, keeps the staging
        copy (after the drop it is the only one left) and says its name.
        """
        rename = f"ALTER DATABASE {quote_ident(staging)} RENAME TO {quote_ident(target)}"
        kept = f"The restored data is in database {staging!r}; finish with: {rename}"
        if target_exists:
            try:
                self._drop_database(target)
            except PgBackupError as error:
                self._drop_quietly(staging)
                raise RestoreFailed(f"could not drop {target!r} to put the restored copy in its place: {error}. "
                                    f"{target!r} was left as it was") from None
            except BaseException:
                print(f"pgbackup: interrupted while dropping {target!r}. {kept}", file=self.progress_stream)
                raise
        try:
            self._execute(rename)
        except PgBackupError as error:
            log.error("restore_rename_failed", staging=staging, target=target)
            raise RestoreFailed(f"could not rename the restored copy to {target!r}: {error}. {kept}") from None
        except BaseException:
            print(f"pgbackup: interrupted while renaming. {kept}", file=self.progress_stream)
            raise

    def _require_empty_default_databases(self, manifest: Manifest) -> None:
        """Refuse, before anything is dropped, when postgres or template1 hold objects of their own:
        the backup's objects for them would clash and stop the restore half-way."""
        found = {database: self.server.query(_USER_OBJECTS_SQL, database) for database in ("postgres", "template1")}
        found = {database: objects for database, objects in found.items() if objects}
        if found:
            listed = "; ".join(
                f"{database!r} has {', '.join(objects[:5])}{', ...' if len(objects) > 5 else ''}"
                for database, objects in found.items()
            )
            raise RestoreFailed(
                f"nothing was changed: {listed}. A full restore adds the backup's objects of postgres and template1 "
                f"to those databases and would stop at the first that exists already. Drop them first, or restore "
                f"the databases one by one with 'restore database NAME --from {manifest.file}'"
            )

    def _check(self, selected: Selected) -> None:
        manifest = selected.manifest
        _require(selected.path.exists(), f"{selected.path} does not exist (its manifest does)")
        check_sha256(selected.path, manifest.sha256, manifest.size_bytes)

    def _database_definition(self, selected: Selected, database: str, rename: DatabaseRename,
                             archive: str | None) -> DatabaseDefinition:
        """How the backup creates ``database`` and what it sets on it (owner, settings, comment, privileges).

        For a full backup the stream is read up to the database's ``\\connect`` (its settings
        are then restored in the same stream as its tables); an archive is asked with
        ``pg_restore --create --schema-only``; a plain database dump (taken without --create)
        has neither, and the database gets the server's defaults.
        """
        if archive is not None:
            script = self.server.transport.run(
                self.server.tool("pg_restore", "--create", "--schema-only", "--file=-", archive),
                self.server.environment(),
            )
            statements = database_statements([script], database, rename)
            return DatabaseDefinition(create_database_options([script], database), statements)
        if selected.is_full:
            chunks = self._plain_stream(selected, f"read how {database} is created")
            return DatabaseDefinition(create_database_options(chunks, database), [])
        return DatabaseDefinition(None, [])

    def _fill_database(self, selected: Selected, database: str, staging: str, rename: DatabaseRename,
                       archive: str | None) -> list[str] | None:
        if archive is None:
            chunks = self._plain_stream(selected, f"restore {database}")
            if selected.is_full:
                chunks = database_section(chunks, database, rename)
            feed_command(self.server, self._psql(staging, single_transaction=True), chunks)
            return None
        listed = self._listed_tables(archive)
        self.server.transport.run(
            self.server.tool("pg_restore", "--exit-on-error", f"--jobs={self.jobs}",
                             f"--dbname={conninfo_dbname(staging)}", archive),
            self.server.environment(),
        )
        return listed

    def _table_into(self, archive: str, target: str, schema: str, name: str, qualified: str) -> None:
        if target not in self._all_databases():
            self._create_database(target)
        _require(not self._table_exists(target, qualified), f"table {qualified} already exists in {target!r}")
        self._execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}", target)
        self.server.transport.run(
            self.server.tool("pg_restore", "--exit-on-error", "--single-transaction", f"--schema={schema}",
                             f"--table={name}", f"--dbname={conninfo_dbname(target)}", archive),
            self.server.environment(),
        )

    def _table_rows_replaced(self, archive: str, target: str, schema: str, name: str, qualified: str) -> None:
        """TRUNCATE and the archive's rows in one transaction: all of it, or nothing changes."""
        pg_restore = self.server.tool("pg_restore")[0]
        script = (
            'archive="$1"; pg_restore="$2"; shift 2; '
            '{ printf "%s\\n" "$PGBACKUP_BEFORE"; '
            '"$pg_restore" --data-only --schema="$PGBACKUP_SCHEMA" --table="$PGBACKUP_TABLE" --file=- "$archive" '
            '|| printf "%s\\n" "$PGBACKUP_FAILED"; } | "$@"'
        )
        env = {
            **self.server.environment(),
            "PGBACKUP_BEFORE": f"TRUNCATE ONLY {qualified};",
            "PGBACKUP_SCHEMA": schema,
            "PGBACKUP_TABLE": name,
            "PGBACKUP_FAILED": "\\.\nDO $$ BEGIN RAISE EXCEPTION 'pg_restore failed: nothing was changed'; END $$;",
        }
        argv = ["sh", "-c", script, "pgbackup-restore-table", archive, pg_restore,
                *self._psql(target, single_transaction=True)]
        self.server.transport.run(argv, env)

    def _verify(
        self, manifest: Manifest, database: str, restored_as: str, report: RestoreReport, listed: list[str] | None
    ) -> None:
        """Tables present (and their row counts where the manifest has them)."""
        if listed is not None:
            missing = toc.missing_tables(listed, self.server.query(toc.LISTED_TABLES_SQL, restored_as))
            if missing:
                raise VerificationFailed(f"tables missing after restoring {database!r}: {', '.join(missing[:10])}")
            report.tables_checked += len(listed)
        counts = manifest.row_counts.get(database)
        if counts is None:
            if listed is None:
                report.notes.append(f"the manifest has no row counts for {database!r}; only the restore's exit status "
                                    "was checked")
            return
        present = set(self._tables(restored_as))
        missing = sorted(table for table in counts if table not in present)
        if missing:
            raise VerificationFailed(f"tables missing after restoring {database!r}: {', '.join(missing[:10])}")
        actual = self.count_rows(restored_as, list(counts))
        wrong = [f"{table}: {actual[table]} rows, manifest {counts[table]}"
                 for table in counts if actual[table] != counts[table]]
        if wrong:
            raise VerificationFailed(f"row counts differ after restoring {database!r}: {'; '.join(wrong[:10])}")
        if listed is None:
            report.tables_checked += len(counts)
        report.rows_checked += len(counts)

    def count_rows(self, database: str, tables: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for start in range(0, len(tables), COUNT_BATCH):
            batch = tables[start:start + COUNT_BATCH]
            sql = "SELECT concat_ws(',', " + ", ".join(f"(SELECT count(*) FROM {table})" for table in batch) + ")"
            (row,) = self.server.query(sql, database)
            counts.update(zip(batch, map(int, row.strip().split(","))))
        return counts

    # --- streams and archives ----------------------------------------------------------
    def _plain_stream(self, selected: Selected, label: str) -> Iterator[bytes]:
        progress = Progress.for_stream(label, self.progress_interval, self.progress_stream)
        chunks: Iterable[bytes] = read_chunks(selected.path, progress.read)
        if selected.manifest.compression == "gzip":
            chunks = gunzip(chunks, selected.manifest.file)
        return _closing(chunks, progress)

    @contextmanager
    def _archive_next_to_server(self, selected: Selected) -> Iterator[str | None]:
        """The path of the custom/directory archive where pg_restore can open it (it needs a file for -j).

        None for a plain dump, which is streamed instead.
        """
        manifest, path = selected.manifest, selected.path
        transport = self.server.transport
        if manifest.format == "plain":
            yield None
        elif isinstance(transport, DockerExecTransport):
            directory = make_temp_dir(self.server)
            try:
                progress = Progress.for_stream(f"copy {manifest.file}", self.progress_interval, self.progress_stream)
                chunks = _closing(read_chunks(path, progress.read), progress)
                if manifest.format == "directory":
                    put_stream(transport, directory, chunks)
                    yield f"{directory}/dump"
                else:
                    put_stream(transport, directory, single_file_tar("archive.dump", path.stat().st_size, chunks))
                    yield f"{directory}/archive.dump"
            finally:
                remove_temp_dir(self.server, directory)
        elif manifest.format == "directory":
            with tempfile.TemporaryDirectory(prefix=RESTORE_SCRATCH_PREFIX, dir=writable_or_none(self.temp_root)) as directory:
                extract_plain_files(path, Path(directory))
                yield str(Path(directory) / "dump")
        else:
            yield str(path)

    def _listed_tables(self, archive: str) -> list[str]:
        """'schema name owner' of each table definition in the archive's table of contents."""
        return toc.listed_tables(self._toc_entries(archive))

    def _has_table_data(self, archive: str, schema: str, name: str) -> bool:
        """Whether the archive has rows for exactly the table ``schema.name`` (pg_restore matches
        --schema and --table by the whole name; a table whose name merely starts the same does not count)."""
        return toc.has_table_data(self._toc_entries(archive, f"--schema={schema}", f"--table={name}"))

    def _toc_entries(self, archive: str, *selection: str) -> list[toc.TocEntry]:
        """The entries of the archive's table of contents that ``selection`` (pg_restore's
        --schema/--table options) keeps."""
        output = self.server.transport.run(self.server.tool("pg_restore", "--list", *selection, archive),
                                           self.server.environment())
        return toc.parse_listing(output)

    # --- SQL helpers -------------------------------------------------------------------
    def _psql(self, database: str, *, single_transaction: bool = False) -> list[str]:
        options = ["-X", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1"]
        if single_transaction:
            options.append("--single-transaction")
        return self.server.tool("psql", *options, f"--dbname={conninfo_dbname(database)}")

    def _execute(self, sql: str, database: str = MAINTENANCE_DB) -> None:
        self.server.query(sql, database)

    def _create_database(self, name: str, options: bytes | None = None) -> None:
        """A new database, with the backup's encoding, locale and template when it has them."""
        if options is None:
            self._execute(f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0")
        else:
            text = options.decode("utf-8").rstrip(";")
            try:
                self._execute(f"CREATE DATABASE {quote_ident(name)} {text}")
            except PgBackupError as error:
                raise RestoreFailed(
                    f"could not create a database as the backup does ({text}): {error}. The server needs the "
                    "same encoding, locale provider and locale (and tablespace, if one is named)"
                ) from None

    def _drop_database(self, name: str) -> None:
        log.warning("dropping_database", database=name)
        self._execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    def _drop_quietly(self, name: str) -> None:
        try:
            self._drop_database(name)
        except PgBackupError as error:
            log.error("staging_database_left", database=name, error=str(error))

    def _all_databases(self) -> list[str]:
        return self.server.query("SELECT datname FROM pg_database")

    def _user_databases(self) -> list[str]:
        return self.server.query(_USER_DATABASES_SQL)

    def _tables(self, database: str) -> list[str]:
        return self.server.query(_TABLES_SQL, database)

    def _table_exists(self, database: str, qualified: str) -> bool:
        return self.server.query(f"SELECT to_regclass({quote_literal(qualified)}) IS NOT NULL", database) == ["t"]

    def _where(self) -> str:
        return self.server.transport.description if not self.server.options.host else (
            f"{self.server.options.host}:{self.server.options.port}")


def split_table(table: str) -> tuple[str, str]:
    """'schema.table' or 'table' (schema public); the names as they are, unquoted."""
    schema, dot, name = table.partition(".")
    return (schema, name) if dot and schema and name else ("public", table)


def _require_backup_of(manifest: Manifest, database: str) -> None:
    """A database or table backup is restored as the database it was taken from (``--into`` puts it elsewhere)."""
    _require(
        manifest.target == database,
        f"{manifest.file} is a backup of database {manifest.target!r}, not {database!r}; to restore it "
        f"in place of {database!r}, name the database it came from and add --into {database!r}",
    )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise RestoreFailed(message)


def _closing(chunks: Iterable[bytes], progress: Progress) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        progress.close()


def writable_or_none(directory: Path | None) -> Path | None:
    """``directory`` if this process may create files in it, else None (tempfile's default)."""
    if directory is not None and os.access(directory, os.W_OK | os.X_OK):
        return directory
    return None


def extract_plain_files(archive_path: Path, directory: Path) -> None:
    """Unpack a directory-format dump's tar: plain files and folders only, never outside
    ``directory`` (the same rules as tarfile's "data" filter, which Python 3.11.2 lacks)."""
    import shutil
    import tarfile

    root = directory.resolve()
    with tarfile.open(archive_path, mode="r|") as archive:
        for member in archive:
            target = (root / member.name).resolve()
            if member.name.startswith("/") or (target != root and root not in target.parents):
                raise PgBackupError(f"{archive_path.name}: refusing the path {member.name!r} outside the dump")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                with open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            else:
                raise PgBackupError(f"{archive_path.name}: refusing {member.name!r}, which is not a plain file")

