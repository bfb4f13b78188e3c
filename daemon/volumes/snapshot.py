"""The volume job: a consistent snapshot of VOLUME_NAME as ``postgres_volume_*.tar.gz``.

Stop mode (the only mode): stop the database container named in POSTGRES_CONTAINER (see
``containers`` for exactly which containers), stream the volume's tar out of a read-only
helper container through gzip into an AtomicArtifact, and start the container again in a
``finally`` - after a failed or cancelled copy too. The artifact is committed and its
manifest written after the database runs again, so the S3 and notification hooks that
follow never lengthen the downtime.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import docker
import structlog

from daemon import __version__
from daemon.backup.compression import Gzip
from daemon.backup.outcome import RunOutcome
from daemon.backup.pipeline import PipelinedWriter
from daemon.backup.runner import BackupRunner
from daemon.encryption import ENCRYPTION_AGE, Unencrypted
from daemon.errors import Cancelled, SettingsError
from daemon.identity import this_instance
from daemon.logs import get_logger
from daemon.manifest import Manifest, write_manifest
from daemon.naming import encrypted_name, volume_snapshot_name
from daemon.progress import Progress
from daemon.settings import Settings
from daemon.sources.connect import docker_client
from daemon.storage.local import AtomicArtifact
from daemon.volumes.containers import (
    ContainerStopper,
    StopReport,
    VolumeError,
    named_container,
    postgres_ready_check,
    restart_recorded,
    running_users,
    select_containers_to_stop,
    volume_exists,
)
from daemon.volumes.helper import HelperContainer, choose_helper_image
from daemon.volumes.tarscan import TarScanner

log = get_logger(__name__)

KIND = "volume"

RUNNING_MODE_REFUSED = (
    "VOLUME_SNAPSHOT_MODE=running is not supported: a file copy of a running PostgreSQL data "
    "directory is only restorable with pg_backup_start/pg_backup_stop around it, the backup_label "
    "written into the copy and every WAL segment from start to stop (what pg_basebackup does); "
    "a plain tar of the volume has none of that. Use VOLUME_SNAPSHOT_MODE=stop (a short, "
    "measured downtime) and the logical dumps for backups without downtime"
)


def check_volume_settings(settings: Settings) -> None:
    """Refuse what the volume job cannot do correctly, before anything is stopped."""
    problems = []
    if not settings.volume_name:
        problems.append("VOLUME_NAME is not set: name the PostgreSQL data volume, e.g. ai-micro-postgres_postgres_data")
    if settings.volume_snapshot_mode != "stop":
        problems.append(f"VOLUME_SNAPSHOT_MODE: {RUNNING_MODE_REFUSED}")
    if problems:
        raise SettingsError(problems)


@dataclass
class SnapshotContext:
    """What one snapshot takes from the run it belongs to."""

    run_id: str
    clock: Callable[[], datetime]
    cancel: threading.Event
    progress: Callable[[str], Progress]
    record_downtime: Callable[[float], None]  # pgbackup_volume_downtime_seconds, set as soon as it is known


def run_volume_snapshot(runner: BackupRunner, settings: Settings, client: docker.DockerClient | None = None,
                        *, wait: bool = True) -> RunOutcome:
    """One volume snapshot run, in the runner's frame: lock, metrics, health, run log and after-run hooks."""
    check_volume_settings(settings)
    volume = settings.volume_name
    def record_downtime(seconds: float) -> None:
        runner.metrics.volume_downtime.labels(volume).set(seconds)

    def take_all(outcome: RunOutcome) -> None:
        context = SnapshotContext(outcome.run_id, runner.clock, runner.cancel, runner.progress, record_downtime)
        runner.take_target(outcome, volume, lambda: take_volume_snapshot(
            settings, client or docker_client(settings), context))

    with structlog.contextvars.bound_contextvars(target=volume):
        return runner.run_kind(KIND, [volume], wait, take_all, volume=volume, mode=settings.volume_snapshot_mode)


def take_volume_snapshot(settings: Settings, client: docker.DockerClient, context: SnapshotContext) -> Manifest:
    """Stop, copy, start again; returns the manifest of the written artifact. Holds no lock
    itself: the caller holds the backup lock."""
    volume = settings.volume_name
    problems = restart_recorded(client, settings.backup_dir, settings.volume_stop_timeout_seconds, context.clock(),
                                postgres_ready_check(settings.postgres_user))
    if problems:
        raise VolumeError("containers an earlier snapshot stopped do not run again: " + "; ".join(problems))
    if not volume_exists(client, volume):
        raise VolumeError(f"volume {volume!r} (VOLUME_NAME) does not exist; check the name with 'docker volume ls'")
    to_stop = select_containers_to_stop(
        volume, running_users(client, volume), named_container(client, settings.postgres_container)
    )
    image = choose_helper_image(client, settings.helper_image, settings.postgres_container)
    started = _unused_start_time(settings, context.clock)
    file_name = _file_name(settings, started)
    scanner = TarScanner()
    progress = context.progress(f"volume {volume}")
    stopper = ContainerStopper(
        client, settings.backup_dir, volume, settings.volume_stop_timeout_seconds, context.clock,
        ready_check=postgres_ready_check(settings.postgres_user),
        snapshot=file_name, run_id=context.run_id, cancel=context.cancel,
    )
    log.info("artifact_started", file=file_name, stopping=[ref.name for ref in to_stop], helper_image=image)
    report: StopReport | None = None
    def write_block(block: bytes) -> None:
        artifact.write(block)
        progress.wrote(len(block))

    # Encryption (ENCRYPT_RECIPIENTS) is the last stage, as for dumps (backup/artifact.py).
    stage = settings.encryption.stage(write_block) if settings.encryption else Unencrypted(write_block)
    try:
        with AtomicArtifact(settings.backup_dir, file_name) as artifact, \
                HelperContainer(client, image, volume, read_only=True) as helper, stage:
            # The helper exists before anything is stopped: a bad image fails without downtime.
            try:
                stopper.stop(to_stop)
                _check_cancel(context.cancel)
                with PipelinedWriter(stage.write, Gzip(settings.gzip_level, settings.gzip_threads)) as writer:
                    for chunk in _scanned(_counted(helper.read_tar(), progress, context.cancel), scanner):
                        writer.put(chunk)
                    writer.finish()
                stage.finish()
                if not scanner.ended:
                    raise VolumeError(f"the tar stream of volume {volume!r} ended before the end-of-archive marker")
            finally:
                report = stopper.start_again()
                if report.stopped:
                    context.record_downtime(report.downtime_seconds)
            artifact.commit()
    finally:
        progress.close()
    manifest = _manifest(settings, file_name, artifact, started, context.clock(), scanner, report, image)
    manifest.run_id = context.run_id
    manifest.sign(settings.signing_key)
    write_manifest(settings.backup_dir, manifest)
    log.info(
        "artifact_written", file=file_name, size_bytes=manifest.size_bytes, sha256=manifest.sha256,
        duration_seconds=round(manifest.duration_seconds, 3), pg_version=scanner.pg_version,
        downtime_seconds=report.downtime_seconds,
    )
    if scanner.pg_version is None:
        log.warning("volume_without_pg_version", volume=volume, hint="is VOLUME_NAME the PostgreSQL data volume?")
    if report.restart_problems:
        raise VolumeError(
            f"the snapshot {file_name} was written, but the database did not come back: "
            + "; ".join(report.restart_problems)
        )
    return manifest


def _manifest(
    settings: Settings, file_name: str, artifact: AtomicArtifact, started: datetime, finished: datetime,
    scanner: TarScanner, report: StopReport, image: str,
) -> Manifest:
    return Manifest(
        kind=KIND,
        target=settings.volume_name,
        file=file_name,
        size_bytes=artifact.size_bytes,
        sha256=artifact.sha256,
        started_at=started,
        finished_at=finished,
        server_version=scanner.pg_version or "",
        format="tar",
        compression="gzip",
        method="docker_volume",
        pgbackup_version=__version__,
        instance=this_instance(settings).name,
        encryption=ENCRYPTION_AGE if settings.encryption else "",
        recipients=settings.encryption.fingerprints if settings.encryption else [],
        details={
            "volume": settings.volume_name,
            "snapshot_mode": settings.volume_snapshot_mode,
            "pg_version_file": scanner.pg_version_path,
            "tar_entries": scanner.entries,
            "stopped_containers": [ref.name for ref in report.stopped],
            "clean_shutdown": report.clean_shutdown,
            "stop_exit_codes": report.exit_codes,
            "downtime_seconds": report.downtime_seconds,
            "restart_problems": report.restart_problems,
            "helper_image": image,
        },
    )


def _file_name(settings: Settings, started: datetime) -> str:
    """postgres_volume_*.tar.gz, plus .age with ENCRYPT_RECIPIENTS."""
    name = volume_snapshot_name(started)
    return encrypted_name(name) if settings.encryption is not None else name


def _unused_start_time(settings: Settings, clock: Callable[[], datetime]) -> datetime:
    """A start time whose file name is free: names have one-second resolution."""
    while True:
        started = clock()
        if not (settings.backup_dir / _file_name(settings, started)).exists():
            return started
        time.sleep(1.05 - started.microsecond / 1_000_000)


def _check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled("volume snapshot cancelled: the daemon is shutting down")


def _counted(chunks: Iterable[bytes], progress: Progress, cancel: threading.Event) -> Iterator[bytes]:
    for chunk in chunks:
        _check_cancel(cancel)
        progress.read(len(chunk))
        yield chunk


def _scanned(chunks: Iterable[bytes], scanner: TarScanner) -> Iterator[bytes]:
    for chunk in chunks:
        scanner.feed(chunk)
        yield chunk
