"""Taking one artifact: stream the dump, compress and hash it on the way, commit it only
when the tool exited 0, then write its manifest. An artifact whose manifest cannot be written
is removed again: without a manifest no reader (listing, restore, retention) would ever see
it, so it would be worthless and occupy space nobody prunes."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from daemon import __version__
from daemon.backup.compression import Gzip
from daemon.backup.exclusions import missing_tables_sql
from daemon.backup.pipeline import PipelinedWriter
from daemon.backup.plans import DumpPlan
from daemon.encryption import ENCRYPTION_AGE, Encryption, Unencrypted
from daemon.errors import BackupDirFull, Cancelled, CommandFailed
from daemon.logs import get_logger
from daemon.manifest import Manifest, write_manifest
from daemon.naming import encrypted_name
from daemon.progress import Progress
from daemon.sources.postgres import PostgresServer, ServerVersion
from daemon.storage.local import AtomicArtifact

log = get_logger(__name__)

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
CANCELLED = "backup cancelled: a stop was requested (shutdown or signal)"


class StreamObserver(Protocol):
    """Sees the dump's raw (uncompressed) bytes as they stream, e.g. to count rows."""

    def feed(self, chunk: bytes) -> None: ...

    def record(self, manifest: Manifest) -> None:
        """Add what it learned to the manifest before the manifest is written."""


class ArtifactSink(Protocol):
    """Another destination fed the same bytes while the artifact is written (e.g. S3)."""

    def write(self, data: bytes) -> None: ...

    def complete(self, manifest: Manifest) -> None: ...

    def abort(self) -> None: ...


@dataclass
class BackupContext:
    run_id: str
    server: PostgresServer
    server_version: ServerVersion
    directory: Path
    gzip: Gzip
    clock: Callable[[], datetime]
    progress: Callable[[str], Progress]
    cancel: threading.Event
    method: str
    instance: str = ""  # recorded in the manifest (daemon/identity.py)
    sinks: Callable[[DumpPlan, str], Sequence[ArtifactSink]] = lambda plan, file_name: ()
    observers: Callable[[DumpPlan], Sequence[StreamObserver]] = lambda plan: ()
    encryption: Encryption | None = None  # ENCRYPT_RECIPIENTS: the stored bytes are an age file
    signing_key: bytes | None = None  # MANIFEST_SIGNING_KEY: the manifest carries its HMAC

    def file_name(self, plan: DumpPlan, started: datetime) -> str:
        name = plan.name(started)
        return encrypted_name(name) if self.encryption is not None else name


def take_artifact(plan: DumpPlan, context: BackupContext) -> Manifest:
    _warn_of_missing_excluded_tables(plan, context)
    started = _unused_start_time(plan, context)
    file_name = context.file_name(plan, started)
    progress = context.progress(f"{plan.kind} {plan.target}")
    sinks = list(context.sinks(plan, file_name))
    observers = list(context.observers(plan))
    log.info("artifact_started", file=file_name, command=plan.argv[0] if plan.argv[0] != "sh" else plan.argv[-1])
    gzip = context.gzip if plan.gzip else None

    def write_block(block: bytes) -> None:
        artifact.write(block)
        progress.wrote(len(block))
        for sink in sinks:
            sink.write(block)

    try:
        # Encryption is the last stage: what reaches the file and the sinks is already an age file.
        stage = context.encryption.stage(write_block) if context.encryption else Unencrypted(write_block)
        with AtomicArtifact(context.directory, file_name) as artifact, stage:
            with PipelinedWriter(stage.write, gzip) as writer:
                with _cancellable(context.cancel), context.server.run_stream(plan.argv, context.cancel) as chunks:
                    for chunk in chunks:
                        if context.cancel.is_set():
                            raise Cancelled(CANCELLED)
                        progress.read(len(chunk))
                        for observer in observers:
                            observer.feed(chunk)
                        writer.put(chunk)
                writer.finish()
            stage.finish()
            definition = _database_definition(plan, context)  # before the commit: a failure leaves no artifact
            artifact.commit()
            manifest = _record_or_retract(plan, context, artifact, started, observers, definition)
    except BaseException as error:
        for sink in sinks:
            sink.abort()
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            raise BackupDirFull(context.directory, file_name, error) from error
        raise
    finally:
        progress.close()
    for sink in sinks:
        sink.complete(manifest)
    log.info(
        "artifact_written", file=file_name, size_bytes=manifest.size_bytes,
        duration_seconds=round(manifest.duration_seconds, 3), sha256=manifest.sha256,
    )
    return manifest


def _warn_of_missing_excluded_tables(plan: DumpPlan, context: BackupContext) -> None:
    """EXCLUDE_TABLE_DATA naming a table the database does not have (a typo, a renamed table)
    leaves out nothing, and pg_dump says nothing: say it, each run. The backup goes on: it holds
    more than asked, never less."""
    if not plan.excluded.table_data or plan.kind not in ("database", "table"):
        return
    try:
        missing = context.server.query(missing_tables_sql(plan.excluded.table_data), plan.target)
    except CommandFailed as error:
        log.warning("exclude_table_data_not_checked", database=plan.target, error=error.stderr_tail or str(error))
        return
    if missing:
        log.warning("exclude_table_data_not_found", database=plan.target, tables=missing,
                    hint=f"EXCLUDE_TABLE_DATA names tables that database {plan.target!r} does not have "
                         "(schema.table, schema public when none is given); nothing of theirs is left out")


@contextmanager
def _cancellable(cancel: threading.Event) -> Iterator[None]:
    """A dump that the stop ended (the transport stops it when ``cancel`` is set) is a cancelled
    run, not a failure of the tool: its message says the run was stopped."""
    try:
        yield
    except CommandFailed as error:
        if cancel.is_set():
            raise Cancelled(CANCELLED) from error
        raise


def _database_definition(plan: DumpPlan, context: BackupContext) -> str:
    """How the dumped database is created and set up, for a plain dump (see DumpPlan.definition_argv)."""
    if not plan.definition_argv:
        return ""
    return context.server.transport.run(plan.definition_argv, context.server.environment()).decode("utf-8")


def _record_or_retract(plan: DumpPlan, context: BackupContext, artifact: AtomicArtifact, started: datetime,
                       observers: Sequence[StreamObserver], definition: str) -> Manifest:
    """The committed artifact's manifest, written; or, when that fails (a full disk, a failing
    observer), the artifact removed again: nothing would ever see it without its manifest."""
    file_name = artifact.final_path.name
    try:
        manifest = _manifest_for(plan, context, file_name, artifact, started)
        manifest.database_definition = definition
        for observer in observers:
            observer.record(manifest)
        manifest.sign(context.signing_key)
        write_manifest(context.directory, manifest)
    except BaseException:
        artifact.retract()
        log.warning("artifact_removed_without_manifest", file=file_name)
        raise
    return manifest


def _unused_start_time(plan: DumpPlan, context: BackupContext) -> datetime:
    """A start time whose file name is free: names have one-second resolution."""
    while True:
        started = context.clock()
        if not (context.directory / context.file_name(plan, started)).exists():
            return started
        time.sleep(1.05 - started.microsecond / 1_000_000)


def _manifest_for(
    plan: DumpPlan, context: BackupContext, file_name: str, artifact: AtomicArtifact, started: datetime
) -> Manifest:
    return Manifest(
        kind=plan.kind,
        target=plan.target,
        file=file_name,
        size_bytes=artifact.size_bytes,
        sha256=artifact.sha256,
        started_at=started,
        finished_at=context.clock(),
        server_version=context.server_version.text,
        format=plan.dump_format,
        compression=plan.compression,
        keep_forever=plan.keep_forever,
        method=context.method,
        databases=list(plan.databases),
        tables=list(plan.tables),
        excluded=plan.excluded.as_record(),
        pgbackup_version=__version__,
        run_id=context.run_id,
        instance=context.instance,
        encryption=ENCRYPTION_AGE if context.encryption else "",
        recipients=context.encryption.fingerprints if context.encryption else [],
    )
