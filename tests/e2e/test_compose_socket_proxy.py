"""End to end: compose.yaml with compose.socket-proxy.yaml, as a user starts it. The sidecar,
built from the Dockerfile, has no Docker socket; it backs up, restores and runs the restore
test through the docker-proxy service, which refuses every other call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_compose import (
    COMPOSE_FILE,
    REPO_ROOT,
    ComposeProject,
    new_project,
    prepare_wheels,
    remove_dead_projects,
    remove_project,
)
from tests.support import socket_proxy

OVERRIDE_FILE = REPO_ROOT / "compose.socket-proxy.yaml"
# Run inside the sidecar: the status the proxy answers each path given with.
_PROBE = """
import sys, urllib.request, urllib.error
for path in sys.argv[1:]:
    try:
        print(urllib.request.urlopen("http://docker-proxy:2375" + path, timeout=10).status)
    except urllib.error.HTTPError as error:
        print(error.code)
"""

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def stack(docker_client, postgres_image, tmp_path_factory) -> Iterator[ComposeProject]:
    """PostgreSQL, the sidecar and the socket proxy, up and healthy; removed afterwards."""
    remove_dead_projects()
    prepare_wheels()
    project = new_project(tmp_path_factory.mktemp("compose-proxy"), postgres_image,
                          files=(COMPOSE_FILE, OVERRIDE_FILE),
                          SOCKET_PROXY_IMAGE=socket_proxy.build_image(), SOCKET_PROXY_ALLOW_RESTORE_TEST="1")
    try:
        project.build()
        project.run("up", "--detach", "--wait", "--wait-timeout", "240", "pgbackup", timeout=400)
        yield project
    finally:
        remove_project(project)


def sidecar_inspect(stack: ComposeProject, docker_client) -> dict:
    return docker_client.api.inspect_container(stack.container_id("pgbackup"))


class TestSidecarBehindTheProxy:
    def test_the_sidecar_has_no_socket(self, stack, docker_client):
        """No mount of the Docker socket in the sidecar; its DOCKER_HOST is the proxy."""
        details = sidecar_inspect(stack, docker_client)
        assert [mount["Destination"] for mount in details["Mounts"]] == ["/backups"]
        assert "DOCKER_HOST=tcp://docker-proxy:2375" in details["Config"]["Env"]

    def test_backup_restore_and_verify_work(self, stack):
        """A full and a database backup, a restore and `pgbackup verify` (a throwaway container)
        all work through the proxy."""
        sql = ("CREATE DATABASE authdb;\n\\connect authdb\n"
               "CREATE TABLE users AS SELECT generate_series(1, 50) AS id;\n")
        stack.run("exec", "-T", "postgres", "sh", "-c", f"psql -v ON_ERROR_STOP=1 -U postgres <<'SQL'\n{sql}SQL")
        full = stack.run("exec", "-T", "pgbackup", "pgbackup", "backup", "full", timeout=600)
        assert Path(full.stdout.strip()).name.startswith("backup_all_")
        stack.run("exec", "-T", "pgbackup", "pgbackup", "backup", "databases", timeout=600)
        stack.run("exec", "-T", "pgbackup", "pgbackup", "restore", "database", "authdb", "--latest", "--yes",
                  "--into", "authdb_copy", timeout=600)
        count = stack.run("exec", "-T", "postgres", "psql", "-At", "-U", "postgres", "-d", "authdb_copy",
                          "-c", "SELECT count(*) FROM users")
        assert count.stdout.strip() == "50"
        verify = stack.run("exec", "-T", "pgbackup", "pgbackup", "verify", timeout=900)
        assert "restore_test_container_removed" in verify.stdout + verify.stderr

    def test_other_calls_are_refused(self, stack):
        """From inside the sidecar, listing containers or reading secrets gets 403."""
        result = stack.run("exec", "-T", "pgbackup", "python3", "-c", _PROBE,
                           "/version", "/v1.41/containers/json", "/v1.41/secrets", "/v1.41/info")
        assert result.stdout.split() == ["200", "403", "403", "403"]

    def test_the_proxy_itself_is_confined(self, stack, docker_client):
        """The proxy runs read-only, with no capability, alone with the sidecar on its network."""
        details = docker_client.api.inspect_container(stack.container_id("docker-proxy"))
        assert details["HostConfig"]["ReadonlyRootfs"] is True
        assert details["HostConfig"]["CapDrop"] == ["ALL"]
        assert list(details["NetworkSettings"]["Networks"]) == [f"{stack.name}_docker-api"]
        assert json.dumps(details["HostConfig"]["Privileged"]) == "false"
