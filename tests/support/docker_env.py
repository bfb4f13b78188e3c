"""The Docker engine, test labels and container images the integration tests use."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path

import docker
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_IMAGES_SCRIPT = REPO_ROOT / "scripts" / "build-images"

TEST_LABEL = "pgbackup-test"
SESSION_LABEL = "pgbackup-test.session"
PID_LABEL = "pgbackup-test.pid"
SESSION_ID = uuid.uuid4().hex[:12]

POSTGRES_IMAGE_ENV = "PGBACKUP_TEST_POSTGRES_IMAGE"
DEFAULT_POSTGRES_MAJOR = 15
UPSTREAM_POSTGRES_IMAGE = "postgres:15"
LOCAL_POSTGRES_IMAGE = "pgbackup-local/postgres:15"
# scripts/build-images's name for the image of each major it builds.
_BUILD_NAMES = {15: "postgres", 17: "postgres17"}
LOCAL_PYTHON_IMAGE = "pgbackup-local/python:3.11"


class DockerUnavailable(RuntimeError):
    """The Docker engine does not answer."""


def connect() -> docker.DockerClient:
    """Return a client for the engine in the environment, after a ping."""
    try:
        client = docker.DockerClient.from_env()
        client.ping()
    except DockerException as error:
        raise DockerUnavailable(
            f"the Docker engine does not answer: {error}. "
            "Run the tests with scripts/test, which installs and starts dockerd."
        ) from error
    return client


def docker_labels() -> dict[str, str]:
    """Labels for everything a test creates in Docker, so it can be cleaned up.

    `pgbackup-test=1` marks the object as a test's; the session and pid labels
    let one test run clean up after itself without touching another run's
    containers on the same machine.
    """
    return {TEST_LABEL: "1", SESSION_LABEL: SESSION_ID, PID_LABEL: str(os.getpid())}


def unique_name(prefix: str) -> str:
    """A container or volume name no other test or run will pick."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def image_present(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def build_local_images(*which: str) -> None:
    """Build the local stand-in images (scripts/build-images) that are missing."""
    subprocess.run(["bash", str(BUILD_IMAGES_SCRIPT), *which], check=True, stdin=subprocess.DEVNULL)


def postgres_image_variable(major: int) -> str:
    """The variable that names another image for ``major``: PGBACKUP_TEST_POSTGRES_IMAGE for 15,
    PGBACKUP_TEST_POSTGRES17_IMAGE for 17."""
    return POSTGRES_IMAGE_ENV if major == DEFAULT_POSTGRES_MAJOR else f"PGBACKUP_TEST_POSTGRES{major}_IMAGE"


def select_postgres_image(client: docker.DockerClient, major: int = DEFAULT_POSTGRES_MAJOR) -> str:
    """The PostgreSQL image of ``major`` the tests run: the override, postgres:MAJOR, or the local build."""
    if major not in _BUILD_NAMES:
        raise LookupError(f"scripts/build-images builds no PostgreSQL {major} image (it builds {sorted(_BUILD_NAMES)})")
    variable = postgres_image_variable(major)
    override = os.environ.get(variable)
    if override:
        if not image_present(client, override):
            raise LookupError(f"{variable}={override} names an image this engine does not have")
        return override
    upstream = f"postgres:{major}"
    if image_present(client, upstream):
        return upstream
    # Quick when the image is there and current; builds it otherwise.
    build_local_images(_BUILD_NAMES[major])
    return f"pgbackup-local/postgres:{major}"


def run_to_completion(client: docker.DockerClient, image: str, **options) -> bytes:
    """Run a one-off container, return its output, remove it with its anonymous volumes.

    (docker-py's ``run(remove=True)`` leaves the anonymous volumes an image declares, such as
    the postgres image's data directory.) A non-zero exit raises ContainerError as ``run`` does.
    """
    container = client.containers.run(image, detach=True, labels=docker_labels(), **options)
    try:
        status = container.wait()
        output = container.logs(stdout=True, stderr=False)
        if status.get("StatusCode") != 0:
            raise docker.errors.ContainerError(container, status.get("StatusCode"), options.get("command"), image,
                                               container.logs(stdout=False, stderr=True))
        return output
    finally:
        remove_container(container)


def remove_container(container: Container) -> None:
    """Remove a container and its anonymous volumes, whatever state it is in."""
    try:
        container.remove(force=True, v=True)
    except NotFound:
        pass


def _pid_alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def is_leftover(labels: dict[str, str], in_use: bool) -> bool:
    """True for this session's objects and those of test runs that have died.

    An object labelled pgbackup-test=1 without a pid label (made by hand or by
    a compose file) counts as left over only once nothing uses it.
    """
    if labels.get(SESSION_LABEL) == SESSION_ID:
        return True
    if PID_LABEL in labels:
        return not _pid_alive(labels[PID_LABEL])
    return not in_use


def remove_leftovers(client: docker.DockerClient) -> list[str]:
    """Remove test containers, volumes and networks of this run and of dead runs.

    Returns what was removed. Objects of another test run that is still going
    on (its pytest process is alive) are left alone.
    """
    removed = []
    label_filter = {"label": f"{TEST_LABEL}=1"}
    # ignore_removed: another run on this engine may remove a container between list and inspect.
    for container in client.containers.list(all=True, filters=label_filter, ignore_removed=True):
        if is_leftover(container.labels, in_use=container.status in ("running", "restarting", "paused")):
            remove_container(container)
            removed.append(f"container {container.name}")
    for network in client.networks.list(filters=label_filter):
        if is_leftover(network.attrs.get("Labels") or {}, in_use=False) and remove_quietly(network):
            removed.append(f"network {network.name}")
    for volume in client.volumes.list(filters=label_filter):
        if is_leftover(volume.attrs.get("Labels") or {}, in_use=False) and remove_quietly(volume):
            removed.append(f"volume {volume.name}")
    return removed


def remove_quietly(docker_object) -> bool:
    """Remove a volume or network; False when it is gone or still in use."""
    try:
        docker_object.remove()
    except NotFound:
        return False
    except DockerException:
        # Still in use by a container of a live run; its own cleanup will get it.
        return False
    return True
