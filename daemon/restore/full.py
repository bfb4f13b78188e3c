"""Restoring a whole cluster from a pg_dumpall backup, or only its roles and tablespaces.

In three passes over the dump, each fed to psql as it is read and stopping at the first error:

1. the roles and tablespaces, with three edits: those the server has already are not created
   again, and the connecting role keeps its password;
2. every other database's section into a staging database of its own, ``jobs`` at a time
   (each reader skips the rest of the dump), each checked against the manifest;
3. template1 and postgres, each in one transaction, into the server's own (their sections are
   read ahead while pass 2 runs).

Only when all of that succeeded is each staging database swapped in for its database. A
failure in pass 2 or 3 leaves every database as it was (the staging databases are dropped);
pass 1 cannot be undone (CREATE TABLESPACE runs outside a transaction).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import TextIO

from daemon.errors import PgBackupError
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.restore.artifacts import ArtifactReader
from daemon.restore.base import MAINTENANCE_DB, SYSTEM_DATABASES, Confirm, RestoreFailed, RestoreReport, require
from daemon.restore.database import LoadCancelled, StagingFailed, staged_copy, staging_kept, swap_in
from daemon.restore.feed import feed_command
from daemon.restore.left_out import databases_left_out
from daemon.restore.selection import Selected
from daemon.restore.streams import (
    database_section,
    globals_section,
    keep_password_of,
    skip_existing_roles,
    skip_existing_tablespaces,
    tablespace_locations,
)
from daemon.restore.target import TargetServer
from daemon.restore.verification import verify

log = get_logger(__name__)

# template1's and postgres's sections are read ahead into memory up to this size each.
SECTION_IN_MEMORY = 64 << 20

_ROLES_SQL = "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'"
_TABLESPACES_SQL = "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')"
_USER_DATABASES_SQL = (
    "SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1') ORDER BY 1"
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


def restore_full(
    server: TargetServer, artifacts: ArtifactReader, confirm: Confirm, selected: Selected, *, force: bool = False,
    jobs: int = 1, messages: TextIO,
) -> RestoreReport:
    """A pg_dumpall backup into a server without user databases (or with, given --force).

    ``jobs`` databases load at once; ``messages`` is where an interrupted swap says where the
    restored copy is.
    """
    manifest = selected.manifest
    require(selected.is_full, f"{manifest.file} is a {manifest.kind} backup, not a full one")
    started = time.monotonic()
    artifacts.check(selected)
    restored = [db for db in manifest.databases if db not in SYSTEM_DATABASES]
    clashing = databases_to_replace(server, manifest, restored, force)
    confirm([f"drop database {db!r} on {server.where()}" for db in clashing])
    report = RestoreReport("the whole server", manifest.file, databases=restored, notes=databases_left_out(manifest))
    log.info("restore_started", what="full", file=manifest.file, databases=restored, jobs=jobs)
    apply_globals(server, artifacts, selected, report)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-read") as reader:
        sections = reader.submit(system_sections_in_memory, artifacts, selected)
        staged = load_staged(server, artifacts, selected, restored, report, jobs)
    try:
        load_system_databases(server, artifacts, selected, sections.result())
    except BaseException as error:
        not_dropped = drop_all_staging(server, staged)
        if isinstance(error, PgBackupError):
            raise RestoreFailed(f"the full restore from {manifest.file} failed, {error}. "
                                f"{databases_untouched(not_dropped)}") from None
        raise
    verify_system_databases(server, manifest, staged, report)
    swap_all_in(server, messages, staged, clashing)
    report.seconds = time.monotonic() - started
    log.info("restore_finished", what="full", file=manifest.file, seconds=round(report.seconds, 1))
    return report


def databases_to_replace(server: TargetServer, manifest: Manifest, restored: list[str], force: bool) -> list[str]:
    """The server's databases that ``restored`` would replace; refused (before anything changes)
    without --force on a server with user databases, or when one of them cannot be dropped."""
    present = user_databases(server)
    clashing = [db for db in restored if db in present]
    if present and not force:
        raise RestoreFailed(
            f"the server already has databases ({', '.join(map(repr, present))}); a full restore goes into an "
            "empty server. Use 'restore database NAME' for one database, or --force to drop "
            f"{', '.join(map(repr, clashing)) or 'nothing'} and restore over the rest"
        )
    require_empty_default_databases(server, manifest)
    undroppable = server.undroppable(clashing)
    require(not undroppable, "refusing before dropping anything: these databases cannot be dropped: "
            + "; ".join(undroppable))
    return clashing


def apply_globals(server: TargetServer, artifacts: ArtifactReader, selected: Selected, report: RestoreReport) -> None:
    """The backup's roles, memberships and tablespaces, in one session that stops at the first error.

    They cannot be staged (CREATE TABLESPACE runs outside a transaction) and the databases'
    owners and privileges need them: what ran before an error stays, no database is touched.
    """
    chunks = globals_section(artifacts.plain_stream(selected, f"roles from {selected.manifest.file}"))
    try:
        feed_command(server.postgres, server.psql(MAINTENANCE_DB), roles_made_safe(server, chunks, report.notes))
    except PgBackupError as error:
        raise RestoreFailed(
            f"the full restore from {selected.manifest.file} stopped at an error in its roles and tablespaces: "
            f"{error}. No database was touched; the roles and tablespaces before the error were created or updated"
        ) from None


def load_staged(
    server: TargetServer, artifacts: ArtifactReader, selected: Selected, databases: list[str],
    report: RestoreReport, jobs: int,
) -> dict[str, str]:
    """Each of ``databases`` loaded into a staging database and verified, ``jobs`` at a time; the
    staging database of each. The first failure stops the other loads and drops every staging
    database: the server's databases are as they were."""
    cancelled = threading.Event()
    staged: dict[str, str] = {}
    failures: list[tuple[str, StagingFailed]] = []
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="restore") as pool:
        futures = {pool.submit(load_one, server, artifacts, selected, database, cancelled): database
                   for database in largest_first(selected.manifest, databases)}
        try:
            for future in as_completed(futures):
                try:
                    staging, checked = future.result()
                except StagingFailed as failed:
                    failures.append((futures[future], failed))
                    cancelled.set()
                    continue
                staged[futures[future]] = staging
                report.merge_checks(checked)
        except BaseException:
            cancelled.set()
            staged.update(finished_loads(futures))
            drop_all_staging(server, staged)
            raise
    if failures:
        raise RestoreFailed(failure_message(selected.manifest.file, failures, drop_all_staging(server, staged)))
    return staged


def finished_loads(futures: dict[Future[tuple[str, RestoreReport]], str]) -> dict[str, str]:
    """The staging database of each load that finishes (the others are cancelled or fail)."""
    finished = {}
    for future, database in futures.items():
        if future.cancel():
            continue
        try:
            finished[database] = future.result()[0]
        except Exception:  # its own staging database was dropped when it failed
            pass
    return finished


def load_one(
    server: TargetServer, artifacts: ArtifactReader, selected: Selected, database: str, cancelled: threading.Event,
) -> tuple[str, RestoreReport]:
    """``database`` in a verified staging database (its name), and what its check counted."""
    checked = RestoreReport(f"database {database!r}", selected.manifest.file)
    if cancelled.is_set():
        raise StagingFailed(LoadCancelled("not started because another database failed"), "", None)
    log.info("database_load_started", database=database)
    try:
        staging = staged_copy(server, artifacts, selected, database, checked, None, jobs=1, cancelled=cancelled)
    except StagingFailed as failed:
        log.info("database_load_failed", database=database, error=str(failed.error))
        raise
    log.info("database_load_finished", database=database, staging=staging)
    return staging, checked


def largest_first(manifest: Manifest, databases: list[str]) -> list[str]:
    """The databases with the most rows first, so that a big one does not start last."""
    return sorted(databases, key=lambda db: -sum(manifest.row_counts.get(db, {}).values()))


def failure_message(file: str, failures: list[tuple[str, StagingFailed]], not_dropped: list[str]) -> str:
    """Why the loads failed (the stopped ones left out) and what is left on the server."""
    real = [(database, failed) for database, failed in failures if not isinstance(failed.error, LoadCancelled)]
    reasons = "; ".join(f"{database!r}: {failed.error}" for database, failed in real or failures)
    left = [staging_kept(failed.staging, failed.not_dropped) for _, failed in failures if failed.not_dropped]
    return (f"the full restore from {file} failed, restoring {reasons}. "
            + databases_untouched(not_dropped) + "".join(". " + text for text in left))


def databases_untouched(not_dropped: list[str]) -> str:
    return ("The server's databases were not touched (the backup's roles and tablespaces were applied)"
            + "".join(". " + text for text in not_dropped))


def drop_all_staging(server: TargetServer, staged: dict[str, str]) -> list[str]:
    """Drop the staging databases of a failed restore; what each one left says (none: [])."""
    left = []
    for staging in staged.values():
        reason = server.drop_staging(staging)
        if reason is not None:
            left.append(staging_kept(staging, reason))
    return left


def system_sections_in_memory(artifacts: ArtifactReader, selected: Selected) -> dict[str, list[bytes] | None]:
    """The sections of template1 and postgres, read while the other databases load (None for one
    larger than SECTION_IN_MEMORY, read again when it loads).

    postgres comes late in the dump (pg_dumpall orders by name): reading up to it only once
    every other database has loaded would add most of a pass over the dump at the end.
    They are kept in memory, never in a file: the backup may be encrypted at rest.
    """
    sections: dict[str, list[bytes] | None] = {}
    for database in system_databases_of(selected.manifest):
        chunks: list[bytes] | None = []
        size = 0
        for chunk in database_section(artifacts.plain_stream(selected, f"read {database}"), database):
            size += len(chunk)
            if size > SECTION_IN_MEMORY:
                chunks = None
                break
            chunks.append(chunk)
        sections[database] = chunks
    return sections


def system_databases_of(manifest: Manifest) -> list[str]:
    return [database for database in ("template1", MAINTENANCE_DB) if database in manifest.databases]


def load_system_databases(
    server: TargetServer, artifacts: ArtifactReader, selected: Selected, sections: dict[str, list[bytes] | None],
) -> None:
    """The backup's objects of template1 and postgres, each in one transaction, into the server's own.

    They cannot be swapped (postgres is where the restore connects, template1 a template) and
    were checked to hold no objects of their own (require_empty_default_databases). Each loads
    in a single transaction, so an error leaves it as it was; template1 loads first, and stays
    loaded if postgres then fails. ``sections`` has those read already (system_sections_in_memory).
    """
    loaded: list[str] = []
    for database in system_databases_of(selected.manifest):
        log.info("database_load_started", database=database)
        chunks = sections.get(database)
        if chunks is None:
            chunks = database_section(artifacts.plain_stream(selected, f"restore {database}"), database)
        try:
            feed_command(server.postgres, server.psql(database, single_transaction=True), chunks)
        except PgBackupError as error:
            kept = "".join(f"; {db!r} holds the backup's objects (its load had committed)" for db in loaded)
            raise PgBackupError(f"restoring {database!r}: {error} (its load was rolled back{kept})") from None
        loaded.append(database)
        log.info("database_load_finished", database=database)


def verify_system_databases(
    server: TargetServer, manifest: Manifest, staged: dict[str, str], report: RestoreReport,
) -> None:
    """postgres checked against the manifest once loaded; a mismatch drops the staging databases
    (postgres keeps the backup's objects: its load committed)."""
    for database in databases_to_verify(manifest):
        if database not in SYSTEM_DATABASES:
            continue
        try:
            verify(server, manifest, database, database, report, listed=None)
        except PgBackupError as error:
            not_dropped = drop_all_staging(server, staged)
            raise RestoreFailed(
                f"{error}. The other databases were not touched (their staging copies were dropped); {database!r} "
                "holds the backup's objects" + "".join(". " + text for text in not_dropped)
            ) from None


def swap_all_in(server: TargetServer, messages: TextIO, staged: dict[str, str], clashing: list[str]) -> None:
    """Each verified staging database in place of its database; after a failed swap the staging
    databases not swapped in yet are dropped (their databases stay as they were)."""
    pending = dict(staged)
    for database, staging in staged.items():
        del pending[database]
        try:
            swap_in(server, messages, staging, database, database in clashing)
        except PgBackupError as error:
            not_dropped = drop_all_staging(server, pending)
            done = [db for db in staged if db not in pending and db != database]
            raise RestoreFailed(
                f"{error}. Restored before it: {', '.join(map(repr, done)) or 'none'}; not restored (left as they "
                f"were): {', '.join(map(repr, pending)) or 'none'}" + "".join(". " + text for text in not_dropped)
            ) from None


def databases_to_verify(manifest: Manifest) -> list[str]:
    """The backup's user databases, and postgres when the manifest counts rows in it.

    The restore adds the backup's objects of postgres to the server's postgres database, which
    held none of its own (require_empty_default_databases), so they are checked like any other
    database's. Without row counts postgres had no tables: there is nothing to check there.
    """
    return [db for db in manifest.databases
            if db not in SYSTEM_DATABASES or (db == MAINTENANCE_DB and db in manifest.row_counts)]


def restore_globals(server: TargetServer, artifacts: ArtifactReader, selected: Selected) -> None:
    """Only the roles and tablespaces of a full backup (for database dumps that refer to them)."""
    require(selected.is_full, f"{selected.manifest.file} is not a full backup")
    artifacts.check(selected)
    chunks = globals_section(artifacts.plain_stream(selected, f"roles from {selected.manifest.file}"))
    feed_command(server.postgres, server.psql(MAINTENANCE_DB), roles_made_safe(server, chunks, notes=[]))


def tablespace_locations_of(artifacts: ArtifactReader, selected: Selected) -> list[str]:
    """The directories a full backup's tablespaces were in (read from its start only)."""
    require(selected.is_full, f"{selected.manifest.file} is not a full backup")
    return tablespace_locations(artifacts.plain_stream(selected, f"tablespaces of {selected.manifest.file}"))


def roles_made_safe(server: TargetServer, chunks: Iterable[bytes], notes: list[str]) -> Iterator[bytes]:
    """pg_dumpall output that neither re-creates existing roles or tablespaces nor changes the
    connecting role's password (notes say so)."""
    role = server.postgres.options.user

    def kept() -> None:
        notes.append(f"role {role!r} (the one pgbackup connects as) keeps its current password; "
                     "the password in the backup was not applied")

    def tablespace_kept(name: str) -> None:
        notes.append(f"tablespace {name!r} exists already and was kept with its current location")

    chunks = skip_existing_roles(chunks, server.query(_ROLES_SQL))
    chunks = skip_existing_tablespaces(chunks, server.query(_TABLESPACES_SQL), on_skipped=tablespace_kept)
    return keep_password_of(chunks, role, on_kept=kept)


def require_empty_default_databases(server: TargetServer, manifest: Manifest) -> None:
    """Refuse, before anything is dropped, when postgres or template1 hold objects of their own:
    the backup's objects for them would clash and stop the restore half-way."""
    found = {database: server.query(_USER_OBJECTS_SQL, database) for database in ("postgres", "template1")}
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


def user_databases(server: TargetServer) -> list[str]:
    return server.query(_USER_DATABASES_SQL)
