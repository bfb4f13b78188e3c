"""Restoring a snapshot into a volume, and cloning one volume into another.

Both unpack a tar stream into the target through a created helper container (Docker's
archive API keeps numeric owners, modes and times), then give the volume's root the
owner and mode of the archive's root entry, so PostgreSQL starts on the result. Neither
writes into a volume that a running container uses, nor into a non-empty one unless asked
to empty it first (``force``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import docker
import docker.errors

from daemon.encryption import Decryption, EncryptionError
from daemon.logs import get_logger
from daemon.manifest import Manifest, manifest_path, read_manifest
from daemon.restore.streams import ArtifactDamaged, gunzip, read_chunks
from daemon.settings import Settings
from daemon.volumes.containers import (
    ContainerStopper,
    StopReport,
    VolumeError,
    VolumeInUse,
    named_container,
    postgres_ready_check,
    restart_recorded,
    running_users,
    select_containers_to_stop,
    volume_exists,
)
from daemon.volumes.helper import CHUNK_BYTES, HelperContainer, choose_helper_image, wipe_volume
from daemon.volumes.tarscan import TarScanner

log = get_logger(__name__)



@dataclass
class TransferResult:
    volume: str
    entries: int
    pg_version: str | None
    created: bool
    wiped: bool
    stop_report: StopReport | None = None


def verified_manifest(artifact: Path, settings: Settings | None = None) -> Manifest:
    """The artifact's manifest, after checking the file's size and sha256 against it; with
    ``settings``, also its signature (MANIFEST_SIGNING_KEY), the identity to decrypt it
    (ENCRYPT_IDENTITY_FILE) and, when encrypted, every age chunk."""
    path = manifest_path(artifact)
    if not artifact.is_file():
        raise VolumeError(f"{artifact} does not exist")
    try:
        manifest = read_manifest(path)
    except FileNotFoundError:
        raise VolumeError(f"{artifact} has no manifest ({path.name}); refusing to restore an unverified file") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise VolumeError(f"the manifest {path.name} is unreadable: {error}") from None
    if manifest.kind != "volume":
        raise VolumeError(f"{artifact.name} is a {manifest.kind!r} backup, not a volume snapshot")
    problem = manifest.signature_problem(settings.signing_key if settings else None)
    if problem is not None:
        log.error("manifest_tampered", file=path.name, location="local", problem=problem)
        raise VolumeError(f"{path.name} is not trusted: {problem}; possible tampering, not restoring it")
    if settings is not None:
        settings.decryption.require(manifest)
    digest, size = hashlib.sha256(), 0
    with artifact.open("rb") as file:
        while block := file.read(CHUNK_BYTES):
            digest.update(block)
            size += len(block)
    if size != manifest.size_bytes or digest.hexdigest() != manifest.sha256:
        raise VolumeError(
            f"{artifact.name} does not match its manifest (size {size} vs {manifest.size_bytes}, "
            f"sha256 {digest.hexdigest()} vs {manifest.sha256}); the file is damaged, not restoring it"
        )
    if settings is not None:
        try:
            settings.decryption.authenticate(artifact, manifest)
        except EncryptionError as error:
            raise VolumeError(f"{error}; not restoring it") from None
    return manifest


def gunzipped(path: Path, manifest: Manifest, decryption: Decryption) -> Iterator[bytes]:
    """The decompressed content of a .tar.gz (one gzip member per compressed block), decrypted
    first when it is a .tar.gz.age, block by block."""
    try:
        yield from gunzip(decryption.plaintext(read_chunks(path), manifest), path.name)
    except ArtifactDamaged as error:
        raise VolumeError(str(error)) from None


def restore_volume(settings: Settings, client: docker.DockerClient, artifact: Path, volume: str,
                   *, force: bool = False) -> TransferResult:
    """Unpack a verified snapshot into ``volume`` (created when missing). Hold the backup lock."""
    manifest = verified_manifest(artifact, settings)
    log.info("volume_restore_verified", file=artifact.name, sha256=manifest.sha256, source_volume=manifest.target)
    image = choose_helper_image(client, settings.helper_image, settings.postgres_container)
    created, wiped = prepare_target(client, image, volume, force)
    scanner = TarScanner()
    with HelperContainer(client, image, volume, read_only=False) as helper:
        helper.write_tar(_scanned(gunzipped(artifact, manifest, settings.decryption), scanner))
        _finish(helper, scanner, artifact.name)
    log.info("volume_restored", file=artifact.name, volume=volume, entries=scanner.entries,
             pg_version=scanner.pg_version)
    return TransferResult(volume, scanner.entries, scanner.pg_version, created, wiped)


def clone_volume(settings: Settings, client: docker.DockerClient, source: str, dest: str,
                 *, force: bool = False, stop: bool = False) -> TransferResult:
    """Copy ``source`` into ``dest`` (created when missing). Hold the backup lock.

    A source that running containers use is refused, unless ``stop``: then stop-mode
    rules apply (only POSTGRES_CONTAINER is stopped, and always started again).
    """
    if source == dest:
        raise VolumeError("SOURCE and DEST are the same volume")
    if not volume_exists(client, source):
        raise VolumeError(f"source volume {source!r} does not exist")
    problems = restart_recorded(client, settings.backup_dir, settings.volume_stop_timeout_seconds,
                                ready_check=postgres_ready_check(settings.postgres_user))
    if problems:
        raise VolumeError("containers an earlier snapshot stopped do not run again: " + "; ".join(problems))
    users = running_users(client, source)
    if users and not stop:
        raise VolumeInUse(
            f"source volume {source!r} is in use by running container(s) "
            f"{', '.join(sorted(ref.name for ref in users))}; a copy of a running server is not consistent. "
            "Stop them first, or pass --stop to let the sidecar stop POSTGRES_CONTAINER for the copy "
            "and start it again"
        )
    to_stop = select_containers_to_stop(source, users, named_container(client, settings.postgres_container))
    image = choose_helper_image(client, settings.helper_image, settings.postgres_container)
    created, wiped = prepare_target(client, image, dest, force)
    scanner = TarScanner()
    stopper = ContainerStopper(
        client, settings.backup_dir, source, settings.volume_stop_timeout_seconds,
        clock=lambda: datetime.now(settings.timezone),
        ready_check=postgres_ready_check(settings.postgres_user),
    )
    try:
        stopper.stop(to_stop)
        with HelperContainer(client, image, source, read_only=True) as reader, \
                HelperContainer(client, image, dest, read_only=False) as writer:
            writer.write_tar(_scanned(reader.read_tar(), scanner))
            _finish(writer, scanner, f"volume {source!r}")
    finally:
        report = stopper.start_again()
    if report.restart_problems:
        raise VolumeError("the copy was made, but the database did not come back: " + "; ".join(report.restart_problems))
    log.info("volume_cloned", source=source, dest=dest, entries=scanner.entries, pg_version=scanner.pg_version,
             downtime_seconds=report.downtime_seconds if report.stopped else None)
    return TransferResult(dest, scanner.entries, scanner.pg_version, created, wiped, report)


def prepare_target(client: docker.DockerClient, image: str, volume: str, force: bool) -> tuple[bool, bool]:
    """Create the target volume, or check that it is unused and empty (or empty it with force);
    (created, wiped). Also what `restore point-in-time` does with the volume it recovers into.
    ``image``: a helper image with sh and find (the wipe runs in it)."""
    if not volume_exists(client, volume):
        try:
            client.volumes.create(volume)
        except docker.errors.DockerException as error:
            raise VolumeError(f"cannot create volume {volume!r}: {error}") from None
        log.info("volume_created", volume=volume)
        return True, False
    users = running_users(client, volume)
    if users:
        raise VolumeInUse(
            f"volume {volume!r} is in use by running container(s) {', '.join(sorted(r.name for r in users))}; "
            "stop them before writing into it"
        )
    with HelperContainer(client, image, volume, read_only=True) as helper:
        empty = helper.is_empty()
    if empty:
        return False, False
    if not force:
        raise VolumeError(
            f"volume {volume!r} is not empty; refusing to write into it. Pass --force to delete its "
            "content first (it is gone for good), or name a new volume"
        )
    wipe_volume(client, image, volume)
    return False, True


def _finish(helper: HelperContainer, scanner: TarScanner, what: str) -> None:
    if not scanner.ended:
        raise VolumeError(f"the tar stream of {what} ended early; the volume holds an incomplete copy")
    if scanner.root is not None:
        helper.set_root(scanner.root)


def _scanned(chunks: Iterable[bytes], scanner: TarScanner) -> Iterator[bytes]:
    for chunk in chunks:
        scanner.feed(chunk)
        yield chunk
