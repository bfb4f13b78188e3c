"""Restoring a whole cluster from a pg_dumpall backup, or only its roles and tablespaces.

The dump is fed to psql as it is read, with three edits: roles and tablespaces the server
has already are not created again, and the connecting role keeps its password.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from daemon.errors import PgBackupError
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.restore.artifacts import ArtifactReader
from daemon.restore.base import MAINTENANCE_DB, SYSTEM_DATABASES, Confirm, RestoreFailed, RestoreReport, require
from daemon.restore.feed import feed_command
from daemon.restore.left_out import databases_left_out
from daemon.restore.selection import Selected
from daemon.restore.streams import (
    globals_section,
    keep_password_of,
    skip_existing_roles,
    skip_existing_tablespaces,
    tablespace_locations,
)
from daemon.restore.target import TargetServer
from daemon.restore.verification import verify

log = get_logger(__name__)

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
    server: TargetServer, artifacts: ArtifactReader, confirm: Confirm, selected: Selected, *, force: bool = False
) -> RestoreReport:
    """A pg_dumpall backup into a server without user databases (or with, given --force)."""
    manifest = selected.manifest
    require(selected.is_full, f"{manifest.file} is a {manifest.kind} backup, not a full one")
    started = time.monotonic()
    artifacts.check(selected)
    present = user_databases(server)
    restored = [db for db in manifest.databases if db not in SYSTEM_DATABASES]
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
    confirm([f"drop database {db!r} on {server.where()}" for db in clashing])
    for database in clashing:
        server.replace_database(database)
    report = RestoreReport("the whole server", manifest.file, databases=restored, notes=databases_left_out(manifest))
    chunks = roles_made_safe(server, artifacts.plain_stream(selected, f"restore {manifest.file}"), report.notes)
    log.info("restore_started", what="full", file=manifest.file, databases=restored)
    try:
        feed_command(server.postgres, server.psql(MAINTENANCE_DB), chunks)
    except PgBackupError as error:
        raise RestoreFailed(
            f"the full restore from {manifest.file} stopped at an error: {error}. The server now holds "
            f"whatever was restored before it: {', '.join(map(repr, user_databases(server))) or 'no databases'}"
        ) from None
    for database in databases_to_verify(manifest):
        verify(server, manifest, database, database, report, listed=None)
    report.seconds = time.monotonic() - started
    log.info("restore_finished", what="full", file=manifest.file, seconds=round(report.seconds, 1))
    return report


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
