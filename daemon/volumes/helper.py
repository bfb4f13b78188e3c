"""The short-lived helper container that reads or fills a volume.

It is created, never started: the Docker archive API (``get_archive``/``put_archive``,
what ``docker cp`` uses) reads and writes a created container's mounts, so the helper's
image needs no tar and no shell, only to exist locally. For a snapshot the volume is
mounted read-only. Its image is HELPER_IMAGE, else the image of the container the sidecar
runs in, else the image of POSTGRES_CONTAINER; all three are images the host already has.
"""

from __future__ import annotations

import io
import re
import socket
import tarfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import docker
import docker.errors
import requests
from docker.models.containers import Container

from daemon.logs import get_logger
from daemon.volumes.containers import VolumeError
from daemon.volumes.tarscan import TarEntry, TarScanner

log = get_logger(__name__)

MOUNT_POINT = "/volume"
CHUNK_BYTES = 1 << 20
HELPER_LABEL = "org.pgbackup.volume-helper"
_CONTAINER_ID = re.compile(r"/containers/([0-9a-f]{64})/")
# Wipes a volume before a forced restore; needs a shell and find in the helper image.
WIPE_COMMAND = ["sh", "-c", f"find {MOUNT_POINT} -mindepth 1 -maxdepth 1 -exec rm -rf -- {{}} +"]


def own_container_id(mountinfo: str) -> str | None:
    """The id of the container whose /proc/self/mountinfo this is (Docker mounts
    /var/lib/docker/containers/ID/{hostname,hosts,resolv.conf} into it), else None."""
    for line in mountinfo.splitlines():
        match = _CONTAINER_ID.search(line)
        if match and any(name in line for name in ("/hostname ", "/hosts ", "/resolv.conf ")):
            return match.group(1)
    return None


def own_container(client: docker.DockerClient) -> Container | None:
    """The container this process runs in, if it runs in one on this Docker engine."""
    candidates = []
    try:
        candidates.append(own_container_id(Path("/proc/self/mountinfo").read_text()))
    except OSError:
        pass
    candidates.append(socket.gethostname())  # Docker's default hostname is the short id
    for candidate in filter(None, candidates):
        try:
            container = client.containers.get(candidate)
        except docker.errors.DockerException:
            continue
        if candidate == container.id or container.id.startswith(candidate):
            return container
    return None


def choose_helper_image(client: docker.DockerClient, helper_image: str | None, database_container: str | None) -> str:
    """HELPER_IMAGE, else the sidecar's own image, else the database container's image."""
    if helper_image:
        try:
            client.images.get(helper_image)
        except docker.errors.ImageNotFound:
            raise VolumeError(
                f"HELPER_IMAGE {helper_image!r} is not on this Docker host; pull or build it, or unset HELPER_IMAGE"
            ) from None
        return helper_image
    sidecar = own_container(client)
    if sidecar is not None:
        return sidecar.attrs["Image"]  # the image id: works even when the tag moved on
    if database_container:
        try:
            return client.containers.get(database_container).attrs["Image"]
        except docker.errors.NotFound:
            pass
    raise VolumeError(
        "no image for the helper container: the sidecar does not run in a container and "
        "POSTGRES_CONTAINER names none; set HELPER_IMAGE to an image on this host (e.g. postgres:15)"
    )


class HelperContainer:
    """A created (never started) container with ``volume`` mounted at /volume."""

    def __init__(self, client: docker.DockerClient, image: str, volume: str, *, read_only: bool):
        self.client = client
        self.image = image
        self.volume = volume
        self.read_only = read_only
        self.container: Container | None = None
        self._streams: list[Iterator[bytes]] = []  # archive streams to close before the removal

    def __enter__(self) -> HelperContainer:
        name = f"pgbackup-volume-helper-{uuid.uuid4().hex[:10]}"
        try:
            self.container = self.client.containers.create(
                self.image, command=[], entrypoint=["true"], name=name, network_mode="none",
                volumes={self.volume: {"bind": MOUNT_POINT, "mode": "ro" if self.read_only else "rw"}},
                labels={HELPER_LABEL: self.volume},
            )
        except docker.errors.DockerException as error:
            raise VolumeError(f"cannot create the helper container from image {self.image!r}: {error}") from None
        log.debug("helper_created", helper=name, volume=self.volume, read_only=self.read_only)
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # An archive stream left half-read (a cancelled or failed copy) keeps its connection open
        # while the exception's traceback holds it, and Docker blocks the removal behind it until
        # the client's 60 s timeout: close it first.
        for stream in self._streams:
            close = getattr(stream, "close", None)
            if close:
                close()
        self._streams.clear()
        if self.container is not None:
            try:
                self.container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
                log.warning("helper_not_removed", helper=self.container.name, error=str(error))

    def read_tar(self) -> Iterator[bytes]:
        """The volume's content as a tar stream (entries ``.``, ``./PG_VERSION``, ...)."""
        try:
            chunks, _stat = self.container.get_archive(f"{MOUNT_POINT}/.", chunk_size=CHUNK_BYTES)
        except docker.errors.DockerException as error:
            raise VolumeError(f"cannot read volume {self.volume!r}: {error}") from None
        self._streams.append(chunks)
        return _reraising(chunks, f"reading volume {self.volume!r}")

    def is_empty(self) -> bool:
        """True when the volume has no entry but its root (reads only the first headers)."""
        scanner = TarScanner()
        chunks = self.read_tar()
        try:
            for chunk in chunks:
                scanner.feed(chunk)
                if scanner.entries > 1 or scanner.ended:
                    break
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        return scanner.entries <= 1

    def write_tar(self, chunks: Iterable[bytes]) -> None:
        """Unpack a tar stream into the volume; numeric owners, modes and times are kept."""
        try:
            accepted = self.container.put_archive(MOUNT_POINT, _reraising(chunks, f"writing volume {self.volume!r}"))
        except docker.errors.DockerException as error:
            raise VolumeError(f"cannot write volume {self.volume!r}: {error}") from None
        if not accepted:
            raise VolumeError(f"Docker refused to unpack the archive into volume {self.volume!r}")

    def set_root(self, root: TarEntry) -> None:
        """Give the volume's root the owner, mode and time of the archive's ``.`` entry
        (Docker leaves a mount point's own attributes alone when unpacking into it)."""
        member = tarfile.TarInfo(MOUNT_POINT.strip("/"))
        member.type = tarfile.DIRTYPE
        member.uid, member.gid, member.mode, member.mtime = root.uid, root.gid, root.mode, root.mtime
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(member)
        try:
            self.container.put_archive("/", archive.getvalue())
        except docker.errors.DockerException as error:
            raise VolumeError(f"cannot set the owner and mode of volume {self.volume!r}: {error}") from None


def wipe_volume(client: docker.DockerClient, image: str, volume: str, timeout: float = 600) -> None:
    """Delete everything in ``volume`` (restore and clone with --force) with a helper that runs."""
    name = f"pgbackup-volume-wipe-{uuid.uuid4().hex[:10]}"
    log.warning("volume_wipe", volume=volume)
    try:
        container = client.containers.create(
            image, command=WIPE_COMMAND, entrypoint=[], name=name, network_mode="none", user="0",
            volumes={volume: {"bind": MOUNT_POINT, "mode": "rw"}}, labels={HELPER_LABEL: volume},
        )
    except docker.errors.DockerException as error:
        raise VolumeError(f"cannot create the helper that empties volume {volume!r}: {error}") from None
    try:
        container.start()
        result = container.wait(timeout=timeout)
        if result.get("StatusCode") != 0:
            output = container.logs(tail=10).decode(errors="replace").strip()
            raise VolumeError(
                f"emptying volume {volume!r} failed (exit status {result.get('StatusCode')}): {output}; "
                f"the helper image {image!r} needs sh and find (set HELPER_IMAGE)"
            )
    except docker.errors.DockerException as error:
        raise VolumeError(f"emptying volume {volume!r} failed: {error}") from None
    finally:
        try:
            container.remove(force=True, v=True)
        except docker.errors.DockerException:
            pass


def _reraising(chunks: Iterable[bytes], doing: str) -> Iterator[bytes]:
    try:
        yield from chunks
    except docker.errors.DockerException as error:
        raise VolumeError(f"{doing}: {error}") from None
    except OSError as error:  # the engine's stream broke off
        raise VolumeError(f"{doing}: the Docker stream broke off: {error}") from None
