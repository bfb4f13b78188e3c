"""Choosing and opening the connection method the settings ask for."""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace

import docker

from daemon.errors import CommandFailed, ConnectionFailed
from daemon.logs import get_logger
from daemon.settings import Settings
from daemon.sources.docker_exec import DockerExecTransport
from daemon.sources.local import LocalProcessTransport
from daemon.sources.postgres import (
    ConnectionOptions,
    PostgresServer,
    ServerVersion,
    check_client_version,
    choose_client_dir,
    installed_client_dirs,
)

log = get_logger(__name__)

# Child processes get a fixed, minimal environment: the daemon's own secrets (S3 keys,
# webhook URLs) never reach pg_dump.
CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"
PROBE_TIMEOUT_SECONDS = 2
# What libpq prints when the server refuses the password (SQLSTATE 28P01).
PASSWORD_REFUSED = "password authentication failed"


@dataclass
class Connection:
    server: PostgresServer
    version: ServerVersion
    method: str  # docker_exec | container_tcp | tcp


def docker_client(settings: Settings) -> docker.DockerClient:
    try:
        return docker.DockerClient(base_url=settings.docker_host)
    except docker.errors.DockerException as error:
        raise ConnectionFailed(f"cannot reach the Docker engine at {settings.docker_host}: {error}") from None


def connect(settings: Settings, client: docker.DockerClient | None = None) -> Connection:
    password = settings.postgres_password.get_secret_value() if settings.postgres_password else None
    options = ConnectionOptions(user=settings.postgres_user, password=password,
                                lock_wait_timeout_seconds=settings.dump_lock_wait_timeout_seconds)
    if not settings.uses_docker_exec:
        return _connect_tcp(settings, replace(options, host=settings.postgres_host, port=settings.postgres_port))
    transport = DockerExecTransport(client or docker_client(settings), settings.postgres_container)
    server = PostgresServer(transport, options)
    version = server.server_version()
    if settings.dump_connection == "auto" and password is not None:
        direct = _container_tcp(settings, server, version)
        if direct is not None:
            return direct
    return Connection(server, version, "docker_exec")


def _connect_tcp(settings: Settings, options: ConnectionOptions) -> Connection:
    transport = _local_transport(settings)
    installed = installed_client_dirs()
    newest = installed[max(installed)] if installed else None
    version = PostgresServer(transport, replace(options, bin_dir=newest)).server_version()
    options = replace(options, bin_dir=choose_client_dir(installed, version.major) if installed else None)
    check_client_version(transport, options, version)
    return Connection(PostgresServer(transport, options), version, "tcp")


def _container_tcp(settings: Settings, exec_server: PostgresServer, version: ServerVersion) -> Connection | None:
    """The same server over TCP at the container's own address, if that works from here.

    The docker exec stream moves about 130 MB/s; a TCP connection is limited only by
    pg_dump. Used only with client tools of at least the server's major version; when TCP
    cannot be had the caller falls back to docker exec. A password the server refuses is no
    reason to fall back: it is a configuration error, and the run fails saying so (a backup that
    works only through the fallback would hide a wrong POSTGRES_PASSWORD until the day it is
    needed over TCP).
    """
    bin_dir = choose_client_dir(installed_client_dirs(), version.major)
    if bin_dir is None:
        log.info("dump_over_docker_exec", reason=f"no client tools of version {version.major} or newer here")
        return None
    port = int(exec_server.query("SHOW port")[0])
    transport = _local_transport(settings)
    for address in _container_addresses(exec_server.transport):
        if not _accepts_connections(address, port):
            continue
        options = replace(exec_server.options, host=address, port=port, bin_dir=bin_dir)
        server = PostgresServer(transport, options)
        try:
            server.query("SELECT 1")
            check_client_version(transport, options, version)
        except (CommandFailed, ConnectionFailed) as error:
            if isinstance(error, CommandFailed) and PASSWORD_REFUSED in error.stderr_tail:
                raise ConnectionFailed(
                    f"PostgreSQL at {address}:{port} refused the password of {options.user!r}: POSTGRES_PASSWORD "
                    "is wrong (set DUMP_CONNECTION=exec to back up through docker exec without TCP)"
                ) from None
            log.info("dump_over_docker_exec", reason=f"TCP to {address}:{port} failed: {error}")
            return None
        return Connection(server, version, "container_tcp")
    log.info("dump_over_docker_exec", reason="the container's addresses are not reachable from here")
    return None


def _container_addresses(transport: DockerExecTransport) -> list[str]:
    networks = transport.running_container().attrs.get("NetworkSettings", {}).get("Networks") or {}
    return [network["IPAddress"] for network in networks.values() if network.get("IPAddress")]


def _accepts_connections(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=PROBE_TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


def _local_transport(settings: Settings) -> LocalProcessTransport:
    return LocalProcessTransport({"PATH": CHILD_PATH, "TMPDIR": str(settings.backup_dir), "LC_ALL": "C.UTF-8"})
