"""The socket proxy of compose.socket-proxy.yaml against the real Docker engine: HAProxy with the
project's haproxy.cfg in its own container, the daemon's real operations through it, and
every other call answered with 403."""

from __future__ import annotations

import json
import subprocess
import urllib.parse

import pytest

from daemon.housekeeping import debris
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.verify import throwaway
from tests.integration.conftest import SMALL_SOURCE_PASSWORD
from tests.support import docker_env
from tests.support.pgbackup_cli import REPO_ROOT, artifact_paths, exec_env, log_events, pgbackup
from tests.support.socket_proxy import build_image, start_proxy

THROWAWAY_NAME = "pgbackup-restore-test-0123456789ab"
HARMLESS_CREATE = {"Image": "scratch-image-that-is-never-created", "Labels": {"pgbackup-test": "1"}}
# Bodies of POST /containers/create that reach beyond the container, each in a form the
# engine accepts.
ESCAPING_CREATES = {
    "privileged": {"HostConfig": {"Privileged": True}},
    "privileged, key in lower case": {"HostConfig": {"privileged": True}},
    "host path bind": {"HostConfig": {"Binds": ["vol:/volume:ro", "/:/host"]}},
    "bind mount": {"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}},
    "host pid namespace": {"HostConfig": {"PidMode": "host"}},
    "host network": {"HostConfig": {"NetworkMode": "host"}},
    "another container's volumes": {"HostConfig": {"VolumesFrom": ["docker-proxy"]}},
    "capability": {"HostConfig": {"CapAdd": ["SYS_ADMIN"]}},
    "unmasked /proc": {"HostConfig": {"MaskedPaths": []}},
}


@pytest.fixture(scope="module")
def proxy_image(docker_client) -> str:
    return build_image()


@pytest.fixture(scope="module")
def strict_proxy(docker_client, proxy_image, small_source):
    """The proxy with no switch: dumps and restores only."""
    proxy = start_proxy(docker_client, proxy_image, small_source.name)
    yield proxy
    docker_env.remove_container(proxy.container)


@pytest.fixture(scope="module")
def restore_test_proxy(docker_client, proxy_image, small_source):
    proxy = start_proxy(docker_client, proxy_image, small_source.name, ALLOW_RESTORE_TEST="1")
    yield proxy
    docker_env.remove_container(proxy.container)


def run_ok(*args: str, env: dict) -> list:
    result = pgbackup(*args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return artifact_paths(result)


def create_body(extra: dict) -> str:
    body = {**HARMLESS_CREATE, **extra}
    return json.dumps(body)


class TestThroughTheProxy:
    def test_backups_and_restores_work(self, small_source, strict_proxy, tmp_path):
        """Backups by docker exec, and restores through stdin and the archive API, work through
        the proxy with no switch, the sidecar reaching the engine only through it."""
        env = exec_env(small_source, tmp_path, DOCKER_HOST=strict_proxy.docker_host, DUMP_CONNECTION="exec")
        assert run_ok("backup", "full", env=env)
        run_ok("backup", "databases", env={**env, "BACKUP_FORMAT": "plain"})
        run_ok("restore", "database", "authdb", "--latest", "--yes", "--into", "authdb_via_stdin", env=env)
        run_ok("backup", "databases", env={**env, "BACKUP_FORMAT": "custom"})
        run_ok("restore", "database", "authdb", "--latest", "--yes", "--into", "authdb_via_archive", env=env)
        for copy in ("authdb_via_stdin", "authdb_via_archive"):
            assert small_source.psql("SELECT count(*) FROM notes", db=copy) == "100"
        assert " 101 " in strict_proxy.log()  # exec streams were upgraded, not cut to a plain response

    def test_dumps_over_auto_connection_work(self, small_source, strict_proxy, tmp_path):
        """DUMP_CONNECTION=auto looks the container's addresses up through the proxy."""
        env = exec_env(small_source, tmp_path, DOCKER_HOST=strict_proxy.docker_host,
                       POSTGRES_PASSWORD=SMALL_SOURCE_PASSWORD)
        assert run_ok("backup", "full", env=env)

    def test_the_restore_test_works_with_its_switch(self, small_source, restore_test_proxy, tmp_path, postgres_image):
        """With ALLOW_RESTORE_TEST=1 `pgbackup verify` starts, fills and removes its throwaway
        container through the proxy."""
        env = exec_env(small_source, tmp_path, DOCKER_HOST=restore_test_proxy.docker_host, DUMP_CONNECTION="exec",
                       RESTORE_TEST_IMAGE=postgres_image)
        run_ok("backup", "full", env=env)
        result = pgbackup("verify", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        events = [event["event"] for event in log_events(result.stderr)]
        assert "restore_test_container_started" in events and "restore_test_container_removed" in events

    def test_the_restore_test_is_refused_without_its_switch(self, small_source, strict_proxy, tmp_path,
                                                           postgres_image):
        """Without ALLOW_RESTORE_TEST the throwaway container cannot be created, and verify says so."""
        env = exec_env(small_source, tmp_path, DOCKER_HOST=strict_proxy.docker_host, DUMP_CONNECTION="exec",
                       RESTORE_TEST_IMAGE=postgres_image)
        run_ok("backup", "full", env=env)
        result = pgbackup("verify", env=env)
        assert result.returncode != 0
        assert "403" in result.stdout + result.stderr


def container_list_path(filters: str) -> str:
    """GET /containers/json with ``filters`` encoded as the SDK encodes it (a form value)."""
    return "/v1.41/containers/json?all=1&filters=" + urllib.parse.quote_plus(filters)


THROWAWAY_FILTER = '{"label": ["pgbackup.restore-test=1"]}'  # json.dumps of the SDK's filter


class TestStartSweepThroughTheProxy:
    def test_abandoned_throwaways_are_removed_with_the_restore_test_switch(
        self, small_source, restore_test_proxy, docker_client, postgres_image, tmp_path
    ):
        """The start's debris sweep lists the restore-test containers through the proxy and removes
        this install's abandoned one (its creator, a container, is gone)."""
        abandoned = docker_client.containers.run(
            postgres_image, ["sleep", "600"], entrypoint=[], detach=True,
            name=docker_env.unique_name("pgbackup-restore-test"),
            labels={throwaway.LABEL: "1", throwaway.OWNER_LABEL: small_source.name,
                    throwaway.CREATOR_LABEL: f"{'0' * 64}/7", **docker_env.docker_labels()})
        try:
            settings = Settings(postgres_container=small_source.name, postgres_user=small_source.user,
                                backup_dir=tmp_path, docker_host=restore_test_proxy.docker_host, _env_file=None)
            report = debris.sweep_debris(settings, Metrics())
            assert report.errors == {}
            assert report.removed.get("restore_test_container") == [abandoned.name]
        finally:
            docker_env.remove_container(abandoned)

    def test_only_the_throwaway_filter_lists_containers(self, restore_test_proxy, strict_proxy):
        """With ALLOW_RESTORE_TEST the listing passes with the throwaway label filter only; any other
        filter, or none, is refused; the strict proxy refuses every listing."""
        assert restore_test_proxy.status_of("GET", container_list_path(THROWAWAY_FILTER)) == 200
        for refused in ('{"label": ["pgbackup-test=1"]}', '{"label": ["pgbackup.restore-test=1", "x=1"]}',
                        '{"name": ["pgbackup.restore-test=1"]}'):
            assert restore_test_proxy.status_of("GET", container_list_path(refused)) == 403, refused
        assert restore_test_proxy.status_of("GET", "/v1.41/containers/json?all=1") == 403
        assert strict_proxy.status_of("GET", container_list_path(THROWAWAY_FILTER)) == 403


class TestRefusedCalls:
    @pytest.mark.parametrize("method, path", [
        ("GET", "/v1.41/secrets"),
        ("GET", "/containers/json"),
        ("GET", "/v1.41/containers/json?all=1"),
        ("DELETE", "/v1.41/images/pgbackup-local/postgres:15"),
        ("POST", "/v1.41/containers/prune"),
        ("GET", "/v1.41/info"),
        ("GET", "/v1.41/events"),
        ("POST", "/v1.41/volumes/create"),
        ("POST", "/v1.41/build"),
        ("POST", "/v1.41/images/create?fromImage=alpine&tag=latest"),
    ])
    def test_calls_outside_the_list_get_403(self, strict_proxy, method, path):
        """Calls no feature makes are refused."""
        assert strict_proxy.status_of(method, path) == 403

    def test_containers_are_looked_up_by_the_database_name_only(self, strict_proxy, small_source):
        """The database container may be inspected by name; another container, or exec by name
        (not by id), may not."""
        assert strict_proxy.status_of("GET", f"/v1.41/containers/{small_source.name}/json") == 200
        assert strict_proxy.status_of("GET", f"/v1.41/containers/{strict_proxy.container.name}/json") == 403
        exec_body = json.dumps({"Cmd": ["true"]})
        assert strict_proxy.status_of("POST", f"/v1.41/containers/{small_source.name}/exec", exec_body) == 403

    def test_a_privileged_exec_is_refused(self, strict_proxy, small_source):
        """An exec into the database container passes, but not a privileged one (every capability
        inside the container, enough to leave it), however the key is spelled."""
        path = f"/v1.41/containers/{small_source.container.id}/exec"
        plain = {"Cmd": ["true"], "AttachStdout": True, "Privileged": False}
        assert strict_proxy.status_of("POST", path, json.dumps(plain)) == 201
        assert strict_proxy.status_of("POST", path, json.dumps({**plain, "Privileged": True})) == 403
        lower_case = json.dumps({"Cmd": ["true"], "privileged": True})
        assert strict_proxy.status_of("POST", path, lower_case) == 403
        escaped = json.dumps(plain)[:-1] + ', "\\u0050rivileged": true}'
        assert strict_proxy.status_of("POST", path, escaped) == 403

    def test_no_container_is_created_without_a_switch(self, strict_proxy):
        """Without a switch even a harmless throwaway container is refused."""
        path = f"/v1.41/containers/create?name={THROWAWAY_NAME}"
        assert strict_proxy.status_of("POST", path, create_body({})) == 403

    @pytest.mark.parametrize("case", sorted(ESCAPING_CREATES))
    def test_containers_that_reach_beyond_themselves_are_refused(self, restore_test_proxy, case):
        """With the restore test allowed, a container body naming a privileged setting is refused."""
        path = f"/v1.41/containers/create?name={THROWAWAY_NAME}"
        assert restore_test_proxy.status_of("POST", path, create_body(ESCAPING_CREATES[case])) == 403

    def test_escaped_keys_and_other_names_are_refused(self, restore_test_proxy):
        """A key spelled with a JSON escape, and a container name outside the pattern, are refused;
        a harmless body under the throwaway name reaches the engine (which finds no such image)."""
        path = f"/v1.41/containers/create?name={THROWAWAY_NAME}"
        escaped = create_body({}).replace('"Labels"', '"HostConfig": {"\\u0050rivileged": true}, "Labels"')
        assert restore_test_proxy.status_of("POST", path, escaped) == 403
        assert restore_test_proxy.status_of("POST", "/v1.41/containers/create?name=evil", create_body({})) == 403
        assert restore_test_proxy.status_of("POST", path, create_body({})) == 404

    def test_only_the_official_postgres_image_may_be_pulled(self, restore_test_proxy):
        """Another image, or an import from a tarball, is refused."""
        assert restore_test_proxy.status_of("POST", "/v1.41/images/create?fromImage=alpine&tag=3") == 403
        assert restore_test_proxy.status_of("POST", "/v1.41/images/create?fromSrc=-&repo=postgres&tag=15") == 403


class TestVolumesThroughTheProxy:
    def test_a_volume_snapshot_and_restore_work_with_their_switch(
            self, postgres_factory, docker_volume_factory, docker_client, proxy_image, postgres_image, tmp_path):
        """With ALLOW_VOLUMES=1 a snapshot (stop, archive, start) and restore-volume work through
        the proxy; without it the snapshot fails with the proxy's 403 and the database runs on."""
        volume = docker_volume_factory()
        server = postgres_factory(volume=volume, databases=())
        strict = start_proxy(docker_client, proxy_image, server.name)
        allowing = start_proxy(docker_client, proxy_image, server.name, ALLOW_VOLUMES="1")
        try:
            refused = pgbackup("backup", "volume", env=exec_env(
                server, tmp_path, DOCKER_HOST=strict.docker_host, VOLUME_NAME=volume, HELPER_IMAGE=postgres_image))
            assert refused.returncode != 0
            assert "403" in refused.stderr
            server.container.reload()
            assert server.container.status == "running"

            env = exec_env(server, tmp_path, DOCKER_HOST=allowing.docker_host, VOLUME_NAME=volume,
                           HELPER_IMAGE=postgres_image)
            [artifact] = run_ok("backup", "volume", env=env)
            restored = docker_volume_factory()
            run_ok("restore-volume", str(artifact), "--volume", restored, env=env)
        finally:
            docker_env.remove_container(strict.container)
            docker_env.remove_container(allowing.container)
        copy = postgres_factory(volume=restored, databases=())
        assert copy.psql("SELECT 1") == "1"


def compose(tmp_path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    """`docker compose -f compose.yaml -f compose.socket-proxy.yaml ARGS` with empty settings files."""
    settings = tmp_path / "empty.env"
    settings.write_text("")
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PGBACKUP_SETTINGS_FILE": str(settings),
                   "POSTGRES_SETTINGS_FILE": str(settings), **variables}
    result = subprocess.run(["docker", "compose", "-f", "compose.yaml", "-f", "compose.socket-proxy.yaml", *args],
                            cwd=REPO_ROOT, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


# Run on the proxy's network: the status of each request given on the command line.
_PROBE = """
import sys, urllib.request, urllib.error
for path in sys.argv[1:]:
    try:
        status = urllib.request.urlopen("http://docker-proxy:2375" + path, timeout=10).status
    except urllib.error.HTTPError as error:
        status = error.code
    print(status)
"""


class TestComposeFiles:
    def test_the_override_takes_the_socket_from_the_sidecar(self, tmp_path):
        """compose.yaml with compose.socket-proxy.yaml: the sidecar mounts no socket and uses the
        proxy; the proxy alone mounts it, on a network no other service joins."""
        services = json.loads(compose(tmp_path, "config", "--format", "json").stdout)["services"]
        sidecar, proxy = services["pgbackup"], services["docker-proxy"]
        assert [mount["target"] for mount in sidecar["volumes"]] == ["/backups"]
        assert sidecar["environment"]["DOCKER_HOST"] == "tcp://docker-proxy:2375"
        assert [mount["target"] for mount in proxy["volumes"]] == ["/var/run/docker.sock"]
        assert list(proxy["networks"]) == ["docker-api"]
        others = [name for name, service in services.items()
                  if name not in ("pgbackup", "docker-proxy") and "docker-api" in (service.get("networks") or {})]
        assert others == []
        assert proxy["environment"]["POSTGRES_CONTAINER"] == services["postgres"]["container_name"]

    def test_the_proxy_service_runs_as_the_compose_file_confines_it(self, tmp_path, docker_client, proxy_image,
                                                                     small_source):
        """The docker-proxy service started by compose (read-only, no capabilities) answers on its
        network: the engine's version and the database container pass, a container list does not."""
        project = docker_env.unique_name("pgbackup-test-proxy")
        variables = {"SOCKET_PROXY_IMAGE": proxy_image, "POSTGRES_CONTAINER": small_source.name}
        compose(tmp_path, "--project-name", project, "up", "--detach", "--no-deps", "docker-proxy", **variables)
        try:
            paths = ["/version", f"/v1.41/containers/{small_source.name}/json", "/v1.41/containers/json"]
            output = docker_env.run_to_completion(
                docker_client, docker_env.LOCAL_PYTHON_IMAGE, command=["python3", "-c", _PROBE, *paths],
                network=f"{project}_docker-api")
            assert output.decode().split() == ["200", "200", "403"]
        finally:
            compose(tmp_path, "--project-name", project, "down", "--volumes", **variables)
