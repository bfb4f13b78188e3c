"""The Docker socket proxy of compose.socket-proxy.yaml (HAProxy with docker/socket-proxy/haproxy.cfg)
in a container of its own, published on a loopback port, for the integration tests."""

from __future__ import annotations

import http.client
import subprocess
import time
from dataclasses import dataclass

import docker
from docker.models.containers import Container

from tests.support import docker_env

IMAGE = "pgbackup-local/socket-proxy:3.0"
BUILD_SCRIPT = docker_env.REPO_ROOT / "scripts" / "images" / "build-socket-proxy-image"
ENGINE_SOCKET = "/var/run/docker.sock"
READY_SECONDS = 20


def build_image() -> str:
    """The proxy's image, built from the current haproxy.cfg (quick when it already is)."""
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdin=subprocess.DEVNULL)
    return IMAGE


@dataclass
class SocketProxy:
    container: Container
    port: int

    @property
    def docker_host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def status_of(self, method: str, path: str, body: str | None = None) -> int:
        """The HTTP status the proxy answers ``method path`` with (a JSON body if given)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()

    def log(self) -> str:
        return self.container.logs().decode(errors="replace")


def start_proxy(client: docker.DockerClient, image: str, postgres_container: str, **switches: str) -> SocketProxy:
    """A running proxy for ``postgres_container`` with the given switches (ALLOW_RESTORE_TEST="1", ...),
    confined as compose.socket-proxy.yaml confines it."""
    port = docker_env.free_port()
    container = client.containers.run(
        image, detach=True, name=docker_env.unique_name("pgbackup-test-socket-proxy"),
        environment={"POSTGRES_CONTAINER": postgres_container, **switches},
        volumes={ENGINE_SOCKET: {"bind": ENGINE_SOCKET, "mode": "ro"}},
        ports={"2375/tcp": ("127.0.0.1", port)},
        read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
        labels=docker_env.docker_labels(),
    )
    proxy = SocketProxy(container, port)
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            if proxy.status_of("GET", "/version") == 200:
                return proxy
        except OSError:
            pass
        if time.monotonic() > deadline:
            output = proxy.log()
            docker_env.remove_container(container)
            raise AssertionError(f"the socket proxy did not answer within {READY_SECONDS} s:\n{output}")
        time.sleep(0.2)
