"""Choosing and opening the connection method the settings ask for."""

from __future__ import annotations

from dataclasses import dataclass, replace

import docker

from daemon.errors import ConnectionFailed
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

# Child processes get a fixed, minimal environment: the daemon's own secrets (S3 keys,
# webhook URLs) never reach pg_dump.
CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class Connection:
    server: PostgresServer
    version: ServerVersion
    method: str  # docker_exec | tcp


def docker_client(settings: Settings) -> docker.DockerClient:
    try:
        return docker.DockerClient(base_url=settings.docker_host)
    except docker.errors.DockerException as error:
        raise ConnectionFailed(f"cannot reach the Docker engine at {settings.docker_host}: {error}") from None


def connect(settings: Settings, client: docker.DockerClient | None = None) -> Connection:
    password = settings.postgres_password.get_secret_value() if settings.postgres_password else None
    options = ConnectionOptions(user=settings.postgres_user, password=password)
    if settings.uses_docker_exec:
        transport = DockerExecTransport(client or docker_client(settings), settings.postgres_container)
        server = PostgresServer(transport, options)
        return Connection(server, server.server_version(), "docker_exec")
    return _connect_tcp(settings, options)


def _connect_tcp(settings: Settings, options: ConnectionOptions) -> Connection:
    transport = LocalProcessTransport({"PATH": CHILD_PATH, "TMPDIR": str(settings.backup_dir), "LC_ALL": "C.UTF-8"})
    installed = installed_client_dirs()
    newest = installed[max(installed)] if installed else None
    options = replace(options, host=settings.postgres_host, port=settings.postgres_port, bin_dir=newest)
    version = PostgresServer(transport, options).server_version()
    options = replace(options, bin_dir=choose_client_dir(installed, version.major) if installed else None)
    check_client_version(transport, options, version)
    return Connection(PostgresServer(transport, options), version, "tcp")
