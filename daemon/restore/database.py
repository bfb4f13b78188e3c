"""Restoring one database (from its own dump or from a full backup) through a staging database.

The database is restored into a fresh staging database first, checked against its manifest,
and only then swapped in for the target: a broken or truncated artifact leaves the target as
it was.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from daemon.errors import PgBackupError
from daemon.logs import get_logger
from daemon.restore.artifacts import ArtifactReader
from daemon.restore.base import (
    MAINTENANCE_DB,
    SYSTEM_DATABASES,
    Confirm,
    RestoreFailed,
    RestoreReport,
    quote_ident,
    require,
    require_backup_of,
)
from daemon.restore.feed import feed_command
from daemon.restore.left_out import excluded_database_hint, left_out_of_database
from daemon.restore.selection import Selected
from daemon.restore.streams import (
    DatabaseRename,
    create_database_options,
    database_section,
    database_statements,
    split_at_create_database,
)
from daemon.restore.target import TargetServer
from daemon.restore.verification import verify
from daemon.sources.postgres import conninfo_dbname

log = get_logger(__name__)

# Staging databases are named so that nothing else matches: a killed restore leaves one behind,
# which the daemon drops at its next start (housekeeping/debris.py), under the backup lock.
STAGING_NAME = re.compile(r"pgbackup_restore_[0-9a-f]{12}")


@dataclass
class DatabaseDefinition:
    options: bytes | None  # what follows the name in the backup's CREATE DATABASE
    statements: list[bytes]  # owner, settings, comment, privileges, renamed to the staging database
    # A full backup: the stream read on from its CREATE DATABASE, for the database's section.
    rest: Iterator[bytes] | None = None


def restore_database(
    server: TargetServer, artifacts: ArtifactReader, confirm: Confirm, selected: Selected, database: str,
    into: str | None = None, *, jobs: int, messages: TextIO,
) -> RestoreReport:
    """One database (from its own dump or from a full backup) into ``into`` or itself.

    ``jobs`` is pg_restore's --jobs; ``messages`` is where an interrupted swap says where the
    restored copy is.
    """
    manifest = selected.manifest
    target = into or database
    require(target not in SYSTEM_DATABASES, f"refusing to replace the system database {target!r}")
    if selected.is_full:
        require(database in manifest.databases, f"{manifest.file} does not contain database {database!r}"
                + excluded_database_hint(manifest, database))
    else:
        require(manifest.kind == "database", f"{manifest.file} is a {manifest.kind} backup, not a database one")
        require_backup_of(manifest, database)
    started = time.monotonic()
    artifacts.check(selected)
    exists = target in server.all_databases()
    confirm([f"drop database {target!r} on {server.where()} and replace it with {database!r} from {manifest.file}"]
            if exists else [])
    report = RestoreReport(f"database {database!r} as {target!r}", manifest.file, databases=[target],
                           notes=left_out_of_database(manifest, database))
    log.info("restore_started", what="database", database=database, into=target, file=manifest.file)
    with artifacts.archive_next_to_server(selected) as archive:
        try:
            staging = staged_copy(server, artifacts, selected, database, report, archive, jobs)
        except StagingFailed as failed:
            left = left_after_failure(target, exists, failed.staging, failed.not_dropped)
            raise RestoreFailed(f"restoring {database!r} from {manifest.file} failed: {failed.error}. {left}") from None
    swap_in(server, messages, staging, target, exists)
    report.seconds = time.monotonic() - started
    log.info("restore_finished", what="database", database=target, seconds=round(report.seconds, 1))
    return report


class StagingFailed(Exception):
    """Restoring into a staging database failed; the staging database was dropped unless
    ``not_dropped`` says why it could not be."""

    def __init__(self, error: PgBackupError, staging: str, not_dropped: str | None):
        super().__init__(str(error))
        self.error, self.staging, self.not_dropped = error, staging, not_dropped


def new_staging_name() -> str:
    """A staging database's name (STAGING_NAME: what the sweep of leftovers looks for)."""
    return f"pgbackup_restore_{uuid.uuid4().hex[:12]}"


def staged_copy(
    server: TargetServer, artifacts: ArtifactReader, selected: Selected, database: str, report: RestoreReport,
    archive: str | None, jobs: int, cancelled: threading.Event | None = None,
) -> str:
    """The backup's ``database`` restored into a new staging database, checked against the
    manifest and given the backup's owner, settings, comment and privileges; its name.

    Raises StagingFailed (the staging database dropped) on any error; a set ``cancelled``
    stops the load of a plain dump as an error.
    """
    staging = new_staging_name()
    rename = DatabaseRename(database, staging)
    try:
        definition = database_definition(server, artifacts, selected, database, rename, archive)
        server.create_database(staging, definition.options)
    except PgBackupError as error:
        raise StagingFailed(error, staging, not_dropped=None) from None
    try:
        listed = fill_database(server, artifacts, selected, database, staging, rename, archive, jobs, cancelled,
                               definition.rest)
        verify(server, selected.manifest, database, staging, report, listed)
        if definition.statements:
            feed_command(server.postgres, server.psql(MAINTENANCE_DB, single_transaction=True),
                         [b"".join(definition.statements)])
    except BaseException as error:
        not_dropped = server.drop_staging(staging)
        if isinstance(error, PgBackupError):
            raise StagingFailed(error, staging, not_dropped) from None
        raise
    return staging


def swap_in(server: TargetServer, messages: TextIO, staging: str, target: str, target_exists: bool) -> None:
    """Drop ``target`` and rename the verified ``staging`` database to it.

    A refused drop (a template database, prepared transactions) leaves ``target`` as it
    was and drops the staging copy (or names it, if that is refused too); a failed rename, or an interruption, keeps the staging
    copy (after the drop it is the only one left) and says its name.
    """
    rename = f"ALTER DATABASE {quote_ident(staging)} RENAME TO {quote_ident(target)}"
    kept = f"The restored data is in database {staging!r}; finish with: {rename}"
    if target_exists:
        try:
            server.replace_database(target)
        except PgBackupError as error:
            not_dropped = server.drop_staging(staging)
            staging_left = "" if not_dropped is None else ". " + staging_kept(staging, not_dropped)
            raise RestoreFailed(f"could not drop {target!r} to put the restored copy in its place: {error}. "
                                f"{target!r} was left as it was{staging_left}") from None
        except BaseException:
            print(f"pgbackup: interrupted while dropping {target!r}. {kept}", file=messages)
            raise
    try:
        server.execute(rename)
    except PgBackupError as error:
        log.error("restore_rename_failed", staging=staging, target=target)
        raise RestoreFailed(f"could not rename the restored copy to {target!r}: {error}. {kept}") from None
    except BaseException:
        print(f"pgbackup: interrupted while renaming. {kept}", file=messages)
        raise


def left_after_failure(target: str, target_exists: bool, staging: str, not_dropped: str | None) -> str:
    """What a failed restore leaves on the server: the target as it was (or nothing), and the
    staging database when it could not be dropped (``not_dropped`` says why)."""
    untouched = f"The database {target!r} was not touched" if target_exists else "Nothing was created"
    if not_dropped is None:
        return untouched
    kept = staging_kept(staging, not_dropped)
    return f"The database {target!r} was not touched. {kept}" if target_exists else kept


def staging_kept(staging: str, reason: str) -> str:
    """The hint keeps a subscription's DROP from dropping the replication slot the original uses."""
    return (f"The staging database {staging!r} could not be dropped ({reason}) and is still on the server; drop it "
            "by hand (a subscription in it first: ALTER SUBSCRIPTION ... DISABLE, ALTER SUBSCRIPTION ... SET "
            "(slot_name = NONE), DROP SUBSCRIPTION ...)")


class LoadCancelled(PgBackupError):
    """Another part of the restore failed, so this load was stopped."""


def until_cancelled(chunks: Iterable[bytes], cancelled: threading.Event) -> Iterator[bytes]:
    """``chunks`` until ``cancelled`` is set, then LoadCancelled (which stops the tool they feed)."""
    for chunk in chunks:
        if cancelled.is_set():
            raise LoadCancelled("stopped because another database failed")
        yield chunk


def database_definition(
    server: TargetServer, artifacts: ArtifactReader, selected: Selected, database: str, rename: DatabaseRename,
    archive: str | None,
) -> DatabaseDefinition:
    """How the backup creates ``database`` and what it sets on it (owner, settings, comment, privileges).

    For a full backup the stream is read up to the database's ``\\connect`` (its settings
    are then restored in the same stream as its tables); an archive is asked with
    ``pg_restore --create --schema-only``; a plain database dump (taken without --create) has
    the same text in its manifest (``database_definition``), except one taken before that field
    existed: that database gets the server's defaults.
    """
    if archive is not None or selected.manifest.database_definition:
        script = (server.run_tool("pg_restore", "--create", "--schema-only", "--file=-", archive)
                  if archive is not None else selected.manifest.database_definition.encode("utf-8"))
        statements = database_statements([script], database, rename)
        return DatabaseDefinition(create_database_options([script], database), statements)
    if selected.is_full:
        options, rest = split_at_create_database(artifacts.plain_stream(selected, f"restore {database}"), database)
        return DatabaseDefinition(options, [], rest)
    return DatabaseDefinition(None, [])


def fill_database(
    server: TargetServer, artifacts: ArtifactReader, selected: Selected, database: str, staging: str,
    rename: DatabaseRename, archive: str | None, jobs: int, cancelled: threading.Event | None = None,
    rest: Iterator[bytes] | None = None,
) -> list[str] | None:
    """Restore the backup's ``database`` into ``staging``; the tables the archive lists (None for a plain dump).

    ``rest`` is a full backup's stream already read up to the database (database_definition).
    """
    if archive is None:
        chunks = rest if rest is not None else artifacts.plain_stream(selected, f"restore {database}")
        if selected.is_full:
            chunks = database_section(chunks, database, rename)
        if cancelled is not None:
            chunks = until_cancelled(chunks, cancelled)
        feed_command(server.postgres, server.psql(staging, single_transaction=True), chunks)
        return None
    listed = artifacts.listed_tables(archive)
    server.run_tool("pg_restore", "--exit-on-error", f"--jobs={jobs}", f"--dbname={conninfo_dbname(staging)}", archive)
    return listed
