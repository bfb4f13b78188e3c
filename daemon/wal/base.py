"""Base backups: ``pg_basebackup`` of the whole cluster as one tar, gzip-compressed while it
streams, into an atomic artifact ``base_*.tar.gz`` with a manifest of kind ``base`` whose
details give the start and stop position, the timeline and the start time.

``-X fetch``: the tar carries the WAL from the backup's start to its stop, so every base backup
is restorable on its own (to its stop point) even across a gap in the WAL archive; with the
archive it is the start of a point-in-time recovery. (``-X stream`` cannot write to stdout,
``-X none`` would make the base depend on the archive having no hole.) ``--checkpoint=fast``
starts it at once instead of after a spread checkpoint of up to minutes.

With ENCRYPT_RECIPIENTS the compressed tar is encrypted while it streams, like every other
artifact (``base_*.tar.gz.age``; the manifest records ``encryption`` and the recipients).
"""

from __future__ import annotations

from datetime import datetime

import structlog

from daemon import __version__
from daemon.backup.compression import Gzip
from daemon.backup.outcome import RunOutcome
from daemon.backup.pipeline import PipelinedWriter
from daemon.backup.runner import BackupRunner
from daemon.encryption import ENCRYPTION_AGE, Encryption, Unencrypted
from daemon.errors import Cancelled, PgBackupError
from daemon.identity import this_instance
from daemon.logs import get_logger
from daemon.manifest import Manifest, write_manifest
from daemon.naming import base_backup_name, encrypted_name
from daemon.settings import Settings
from daemon.storage.local import AtomicArtifact, unused_start_time
from daemon.wal.basetar import BaseFacts, BaseTarScanner
from daemon.wal.server import BASE_BACKUP_APPLICATION_NAME, ReplicationEndpoint, resolve_endpoint

log = get_logger(__name__)

KIND = "base"
TARGET = "cluster"
WAL_METHOD = "fetch"


class BaseBackupError(PgBackupError):
    """A base backup's stream was not a complete pg_basebackup tar."""


def base_backup_argv(endpoint: ReplicationEndpoint, label: str) -> list[str]:
    return endpoint.replication.tool(
        "pg_basebackup", "--pgdata=-", "--format=tar", f"--wal-method={WAL_METHOD}", "--checkpoint=fast",
        f"--label={label}",
    )


def run_base_backup(runner: BackupRunner, settings: Settings, *, wait: bool = True) -> RunOutcome:
    """One base backup run, in the runner's frame: lock, metrics, health, run log and the
    after-run hooks (the offsite backlog uploads it when S3_UPLOAD_KINDS has ``base``)."""
    def take_all(outcome: RunOutcome) -> None:
        runner.take_target(outcome, TARGET, lambda: take_base_backup(settings, runner, outcome.run_id))

    with structlog.contextvars.bound_contextvars(target=TARGET):
        return runner.run_kind(KIND, [TARGET], wait, take_all)


def take_base_backup(settings: Settings, runner: BackupRunner, run_id: str) -> Manifest:
    endpoint = resolve_endpoint(settings, runner.docker_client)
    encryption = settings.encryption

    def name_at(moment: datetime) -> str:
        name = base_backup_name(moment)
        return encrypted_name(name) if encryption is not None else name

    started = unused_start_time(settings.backup_dir, name_at, runner.clock)
    file_name = name_at(started)
    scanner = BaseTarScanner()
    progress = runner.progress(f"base {TARGET}")
    argv = base_backup_argv(endpoint, f"pgbackup {file_name}")
    log.info("artifact_started", file=file_name, command=argv[0], server=endpoint.address)

    def write_block(block: bytes) -> None:
        artifact.write(block)
        progress.wrote(len(block))

    try:
        # Encryption is the last stage, as for every artifact: the file holds an age file.
        stage = encryption.stage(write_block) if encryption is not None else Unencrypted(write_block)
        with AtomicArtifact(settings.backup_dir, file_name) as artifact, stage:
            with PipelinedWriter(stage.write, Gzip(settings.gzip_level, settings.gzip_threads)) as writer:
                environment = endpoint.environment(BASE_BACKUP_APPLICATION_NAME)
                with endpoint.replication.transport.stream(argv, environment) as chunks:
                    for chunk in chunks:
                        if runner.cancel.is_set():
                            raise Cancelled("base backup cancelled: the daemon is shutting down")
                        progress.read(len(chunk))
                        scanner.feed(chunk)
                        writer.put(chunk)
                writer.finish()
            stage.finish()
            facts = _facts(scanner)
            artifact.commit()
            manifest = _manifest(settings, endpoint, file_name, artifact, started, runner.clock(), facts, run_id,
                                 encryption)
            try:
                manifest.sign(settings.signing_key)  # MANIFEST_SIGNING_KEY: unsigned would be foreign
                write_manifest(settings.backup_dir, manifest)
            except BaseException:
                artifact.retract()
                raise
    finally:
        progress.close()
    log.info("artifact_written", file=file_name, size_bytes=manifest.size_bytes, sha256=manifest.sha256,
             start_lsn=facts.start_lsn, stop_lsn=facts.stop_lsn, timeline=facts.timeline)
    return manifest


def _facts(scanner: BaseTarScanner) -> BaseFacts:
    if not scanner.ended:
        raise BaseBackupError("pg_basebackup's tar ended before its end-of-archive marker")
    try:
        return scanner.facts()
    except ValueError as error:
        raise BaseBackupError(str(error)) from None


def _manifest(settings: Settings, endpoint: ReplicationEndpoint, file_name: str, artifact: AtomicArtifact,
              started: datetime, finished: datetime, facts: BaseFacts, run_id: str,
              encryption: Encryption | None) -> Manifest:
    return Manifest(
        kind=KIND, target=TARGET, file=file_name, size_bytes=artifact.size_bytes, sha256=artifact.sha256,
        started_at=started, finished_at=finished, server_version=endpoint.server_version, format="tar",
        compression="gzip", method="pg_basebackup", pgbackup_version=__version__, run_id=run_id,
        instance=this_instance(settings).name,
        encryption=ENCRYPTION_AGE if encryption is not None else "",
        recipients=encryption.fingerprints if encryption is not None else [],
        details={
            "start_lsn": facts.start_lsn, "stop_lsn": facts.stop_lsn, "timeline": facts.timeline,
            "start_time": facts.start_time, "start_segment": facts.start_segment, "wal_method": WAL_METHOD,
        },
    )
