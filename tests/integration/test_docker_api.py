"""docs/docker-api.md stays true: each feature's real operations run through a recording
relay in front of the Docker engine, and every request seen is one the document lists for
that feature (the list the socket proxy of compose.socket-proxy.yaml allows)."""

from __future__ import annotations

import docker.errors
import pytest

from tests.integration.conftest import SMALL_SOURCE_PASSWORD
from tests.support import docker_env
from tests.support.docker_api_doc import documented_calls, undocumented
from tests.support.docker_relay import DockerRelay, Request
from tests.support.pgbackup_cli import artifact_paths, exec_env, pgbackup

DUMPS = "Dumps"
RESTORES = "Restores"
RESTORE_TEST = "The restore test and pgbackup verify"
VOLUMES = "Volume snapshots, restore-volume and clone-volume"


@pytest.fixture(scope="module")
def relay():
    with DockerRelay() as running:
        yield running


def run_ok(*args: str, env: dict) -> list:
    result = pgbackup(*args, env=env)
    assert result.returncode == 0, result.stderr
    return artifact_paths(result)


def assert_documented(requests: list[Request], section: str) -> None:
    calls = documented_calls()[section]
    assert requests, "no Docker API request was recorded: the relay saw nothing"
    assert undocumented(requests, calls) == [], f"requests not listed under '## {section}' in docs/docker-api.md"


def remove_volume(docker_client, name: str) -> None:
    """Remove a volume the daemon created for a test (it carries no test label)."""
    try:
        docker_env.remove_quietly(docker_client.volumes.get(name))
    except docker.errors.NotFound:
        pass


class TestDocumentedCalls:
    def test_the_document_lists_every_feature(self):
        """Each feature has a section with at least one call."""
        sections = documented_calls()
        for section in (DUMPS, RESTORES, RESTORE_TEST, VOLUMES):
            assert sections.get(section), f"docs/docker-api.md has no calls under '## {section}'"

    def test_dumps_through_docker_exec_and_the_address_lookup(self, small_source, relay, tmp_path):
        """Full and per-database backups by docker exec, and with DUMP_CONNECTION=auto, make only
        the calls listed under Dumps."""
        env = exec_env(small_source, tmp_path, DOCKER_HOST=relay.docker_host, DUMP_CONNECTION="exec")
        relay.take()
        run_ok("backup", "full", env=env)
        run_ok("backup", "databases", env={**env, "BACKUP_FORMAT": "custom"})
        run_ok("backup", "full", env={**env, "DUMP_CONNECTION": "auto", "POSTGRES_PASSWORD": SMALL_SOURCE_PASSWORD})
        requests = relay.take()
        assert any(request.path.endswith("/start") and "/exec/" in request.path for request in requests)
        assert_documented(requests, DUMPS)

    def test_restores_through_stdin_and_the_archive_api(self, small_source, relay, tmp_path):
        """A plain dump restored through psql's stdin and a custom archive copied in for
        pg_restore make only the calls listed under Restores."""
        env = exec_env(small_source, tmp_path, DOCKER_HOST=relay.docker_host, DUMP_CONNECTION="exec")
        run_ok("backup", "databases", env={**env, "BACKUP_FORMAT": "plain"})
        relay.take()
        run_ok("restore", "database", "authdb", "--latest", "--yes", "--into", "authdb_plain_copy", env=env)
        run_ok("backup", "databases", env={**env, "BACKUP_FORMAT": "custom"})
        run_ok("restore", "database", "authdb", "--latest", "--yes", "--into", "authdb_custom_copy", env=env)
        requests = relay.take()
        assert any(request.method == "PUT" and request.path.endswith("/archive") for request in requests)
        assert_documented(requests, RESTORES)

    def test_restore_test_throwaway_container(self, small_source, relay, tmp_path, postgres_image):
        """`pgbackup verify`, the scheduled restore test's code, makes only the calls listed under
        the restore test, and its container is created with no setting the proxy refuses."""
        env = exec_env(small_source, tmp_path, DOCKER_HOST=relay.docker_host, DUMP_CONNECTION="exec",
                       RESTORE_TEST_IMAGE=postgres_image)
        run_ok("backup", "full", env=env)
        relay.take()
        result = pgbackup("verify", env=env)
        assert result.returncode == 0, result.stderr
        requests = relay.take()
        creates = [request for request in requests if request.path.endswith("/containers/create")]
        assert len(creates) == 1 and creates[0].query.startswith("name=pgbackup-restore-test-")
        assert_documented(requests, RESTORE_TEST)

    def test_volume_snapshot_restore_and_clone(self, postgres_factory, docker_volume_factory, docker_client, relay,
                                                tmp_path, postgres_image):
        """A volume snapshot, restore-volume, clone-volume into a new volume and over a full one
        make only the calls listed under volume snapshots."""
        volume = docker_volume_factory()
        server = postgres_factory(volume=volume, databases=())
        env = exec_env(server, tmp_path, DOCKER_HOST=relay.docker_host, VOLUME_NAME=volume,
                       HELPER_IMAGE=postgres_image)
        restored, cloned = docker_volume_factory(), docker_env.unique_name("pgbackup-test-clone")
        relay.take()
        try:
            [artifact] = run_ok("backup", "volume", env=env)
            run_ok("restore-volume", str(artifact), "--volume", restored, env=env)
            run_ok("clone-volume", restored, cloned, env=env)
            run_ok("clone-volume", volume, restored, "--force", "--stop", env=env)
        finally:
            remove_volume(docker_client, cloned)
        requests = relay.take()
        assert any(request.path.endswith("/stop") for request in requests)
        assert_documented(requests, VOLUMES)
