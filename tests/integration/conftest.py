"""Fixtures several integration modules share (the Docker and PostgreSQL ones are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.support.docker_env import remove_container
from tests.support.postgres import start_postgres
from tests.support.webhook import RecordingServer

# Long enough to be masked inside any log value (logs.MIN_SUBSTRING_SECRET).
SMALL_SOURCE_PASSWORD = "small-source-password-4711"


@pytest.fixture
def recording_servers():
    """Start RecordingServers (keyword arguments as RecordingServer's); all closed after the test."""
    started: list[RecordingServer] = []

    def start(**options) -> RecordingServer:
        server = RecordingServer(**options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="module")
def small_source(docker_client, postgres_image):
    """One small server (authdb with a table of 100 rows, password SMALL_SOURCE_PASSWORD) for a
    module's runs, which only read from it."""
    server = start_postgres(docker_client, postgres_image, databases=("authdb",), password=SMALL_SOURCE_PASSWORD)
    try:
        server.psql("CREATE TABLE notes AS SELECT generate_series(1, 100) AS n", db="authdb")
        yield server
    finally:
        remove_container(server.container)
