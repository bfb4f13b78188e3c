"""Fixtures shared by all tests: Docker, PostgreSQL 15 containers and an S3 server.

Integration tests use real services: run them with scripts/test, which
installs and starts what they need.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Lets `tests.support` be imported however pytest was started.
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import subprocess  # noqa: E402

import pytest  # noqa: E402

from tests.support import docker_env  # noqa: E402
from tests.support.postgres import DEFAULT_DATABASES, PgServer, start_postgres  # noqa: E402
from tests.support.s3 import S3Server  # noqa: E402

_DOCKER_FIXTURES = {"docker_client", "postgres_image", "postgres_factory", "docker_volume_factory"}


def pytest_collection_modifyitems(items):
    """Mark every test that needs Docker, so `-m "not docker"` leaves them out."""
    for item in items:
        if _DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_client():
    """A pinged client of the local Docker engine.

    At the end of the session it removes the containers, volumes and networks
    labelled pgbackup-test=1 that this run (or a test run that died) left.
    """
    try:
        client = docker_env.connect()
    except docker_env.DockerUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    docker_env.remove_leftovers(client)
    yield client
    docker_env.remove_leftovers(client)
    client.close()


@pytest.fixture(scope="session")
def postgres_image(docker_client) -> str:
    """The PostgreSQL 15 image tag to run.

    PGBACKUP_TEST_POSTGRES_IMAGE if set, else postgres:15 if present, else
    pgbackup-local/postgres:15 (built by scripts/build-images when missing).
    """
    try:
        return docker_env.select_postgres_image(docker_client)
    except (LookupError, subprocess.CalledProcessError) as error:
        pytest.fail(f"no PostgreSQL image to test with: {error}", pytrace=False)


@pytest.fixture
def postgres_factory(docker_client, postgres_image):
    """Start PostgreSQL containers; all of them are removed after the test.

    postgres_factory(databases=("authdb", "apidb", "admindb"), password="secret",
    user="postgres", name=None, volume=None, publish=True, **options) -> PgServer
    """
    servers: list[PgServer] = []

    def factory(
        databases=DEFAULT_DATABASES,
        password: str | None = "secret",
        user: str = "postgres",
        name: str | None = None,
        volume: str | None = None,
        publish: bool = True,
        **options,
    ) -> PgServer:
        server = start_postgres(
            docker_client,
            postgres_image,
            databases=databases,
            password=password,
            user=user,
            name=name,
            volume=volume,
            publish=publish,
            **options,
        )
        servers.append(server)
        return server

    yield factory
    for server in servers:
        docker_env.remove_container(server.container)


@pytest.fixture
def docker_volume_factory(docker_client):
    """Create labelled named volumes (returns the name); removed after the test."""
    volumes = []

    def factory(prefix: str = "pgbackup-test-vol") -> str:
        volume = docker_client.volumes.create(docker_env.unique_name(prefix), labels=docker_env.docker_labels())
        volumes.append(volume)
        return volume.name

    yield factory
    for volume in volumes:
        docker_env.remove_quietly(volume)


@pytest.fixture
def s3_server(tmp_path_factory):
    """A fresh SeaweedFS S3 server on loopback with its bucket created, for one test."""
    server = S3Server(base_dir=tmp_path_factory.mktemp("s3"))
    server.start()
    yield server
    server.kill()
