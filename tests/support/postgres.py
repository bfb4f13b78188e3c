"""PostgreSQL 15 servers in throwaway containers, for the integration tests."""

from __future__ import annotations

import io
import socket
import struct
import tarfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import docker
from docker.errors import APIError
from docker.models.containers import Container

from tests.support import docker_env

PGDATA = "/var/lib/postgresql/data"
DEFAULT_DATABASES = ("authdb", "apidb", "admindb")
# The PostgreSQL SSLRequest code; any server answers it with one byte.
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
_PORT_TAKEN_HINTS = ("port is already allocated", "address already in use")


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class PgServer:
    """A running PostgreSQL container and how to reach it.

    `port` is the host port published on 127.0.0.1 (None when not published).
    """

    container: Container
    name: str
    image: str
    user: str
    password: str | None
    port: int | None
    host: str = "127.0.0.1"
    _sql_files: int = field(default=0, repr=False)

    def dsn(self, db: str = "postgres") -> str:
        """A libpq URI for a TCP connection from the host."""
        if self.port is None:
            raise AssertionError(f"{self.name} publishes no port")
        secret = f":{self.password}" if self.password else ""
        return f"postgresql://{self.user}{secret}@{self.host}:{self.port}/{db}"

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL with psql inside the container as the postgres OS user; return its output.

        The SQL is read as a script, so several statements (CREATE DATABASE
        among them) may be given at once. Output is unaligned and tuples-only
        (`-At`), without command tags; the trailing newline is stripped.
        """
        path = self._copy_sql_in(sql)
        command = 'psql -X -q -v ON_ERROR_STOP=1 -At -U "$1" -d "$2" -f "$3"; status=$?; rm -f "$3"; exit $status'
        exit_code, (stdout, stderr) = self.container.exec_run(
            ["sh", "-c", command, "psql", self.user, db, path], user="postgres", demux=True
        )
        if exit_code != 0:
            raise AssertionError(
                f"psql on {self.name}/{db} failed with exit code {exit_code}: "
                f"{(stderr or b'').decode(errors='replace').strip()}\nSQL: {sql[:2000]}"
            )
        return (stdout or b"").decode().rstrip("\n")

    def stop(self, timeout: int = 30) -> None:
        self.container.stop(timeout=timeout)

    def start(self, timeout: float = 60) -> None:
        """Start the stopped container and wait until it accepts connections."""
        self.container.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the server answers a real query over TCP with the password.

        The official image's entrypoint (and ours) first runs a temporary server
        on the Unix socket only; checking over TCP skips past that phase.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.container.reload()
            if self.container.status in ("exited", "dead"):
                raise AssertionError(f"container {self.name} stopped while starting:\n{self.logs_tail()}")
            if self._accepts_queries():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} was not ready after {timeout} s:\n{self.logs_tail()}")
            time.sleep(0.25)

    def logs_tail(self, lines: int = 40) -> str:
        return self.container.logs(tail=lines).decode(errors="replace")

    def _accepts_queries(self) -> bool:
        tcp = ("-h", "127.0.0.1", "-p", "5432", "-U", self.user)
        ready, _ = self.container.exec_run(["pg_isready", "-q", *tcp], user="postgres")
        if ready != 0:
            return False
        environment = {"PGPASSWORD": self.password} if self.password else {}
        query = ["psql", "-X", "-At", *tcp, "-d", "postgres", "-w", "-c", "SELECT 1"]
        answered, output = self.container.exec_run(query, user="postgres", environment=environment)
        if answered != 0 or output.strip() != b"1":
            return False
        return self.port is None or _answers_postgres_protocol(self.host, self.port)

    def _copy_sql_in(self, sql: str) -> str:
        self._sql_files += 1
        name = f"pgbackup-test-{uuid.uuid4().hex[:8]}-{self._sql_files}.sql"
        data = sql.encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mode = 0o644
            tar.addfile(member, io.BytesIO(data))
        self.container.put_archive("/tmp", archive.getvalue())
        return f"/tmp/{name}"


def _answers_postgres_protocol(host: str, port: int) -> bool:
    """True when a PostgreSQL server (not just docker-proxy) answers on host:port."""
    try:
        with socket.create_connection((host, port), timeout=2) as connection:
            connection.sendall(_SSL_REQUEST)
            return connection.recv(1) in (b"N", b"S")
    except OSError:
        return False


def start_postgres(
    client: docker.DockerClient,
    image: str,
    *,
    databases: Iterable[str] = DEFAULT_DATABASES,
    password: str | None = "secret",
    user: str = "postgres",
    name: str | None = None,
    volume: str | None = None,
    publish: bool = True,
    environment: dict[str, str] | None = None,
    timeout: float = 90,
    **run_options,
) -> PgServer:
    """Start a PostgreSQL container, wait until it is ready and create `databases`.

    `volume` is a named volume or an absolute host path mounted at PGDATA
    (without it, the image's anonymous volume is used). With `publish`, port
    5432 is published on a free port of 127.0.0.1. `password=None` starts the
    server with trust authentication. Further keyword arguments go to
    `client.containers.run`.
    """
    container_environment = {"POSTGRES_USER": user}
    if password:
        container_environment["POSTGRES_PASSWORD"] = password
    else:
        container_environment["POSTGRES_HOST_AUTH_METHOD"] = "trust"
    container_environment.update(environment or {})
    labels = {**docker_env.docker_labels(), **run_options.pop("labels", {})}
    options = {
        "name": name or docker_env.unique_name("pgbackup-test-pg"),
        "environment": container_environment,
        "labels": labels,
        "detach": True,
        **run_options,
    }
    if volume:
        options["volumes"] = {volume: {"bind": PGDATA, "mode": "rw"}}
    container, port = _run_with_free_port(client, image, options, publish)
    server = PgServer(
        container=container, name=container.name, image=image, user=user, password=password or None, port=port
    )
    try:
        server.wait_ready(timeout)
        create_databases(server, databases)
    except BaseException:
        docker_env.remove_container(container)
        raise
    return server


def create_databases(server: PgServer, databases: Iterable[str]) -> None:
    """Create each database that does not exist yet."""
    existing = set(server.psql("SELECT datname FROM pg_database").splitlines())
    missing = [db for db in databases if db not in existing]
    if missing:
        server.psql("".join(f"CREATE DATABASE {quote_identifier(db)};\n" for db in missing))


def _run_with_free_port(
    client: docker.DockerClient, image: str, options: dict, publish: bool, attempts: int = 5
) -> tuple[Container, int | None]:
    """Run the container, retrying when the chosen host port was taken meanwhile."""
    for attempt in range(attempts):
        port = docker_env.free_port() if publish else None
        ports = {"5432/tcp": ("127.0.0.1", port)} if publish else None
        try:
            return client.containers.run(image, ports=ports, **options), port
        except APIError as error:
            if not publish or not any(hint in str(error) for hint in _PORT_TAKEN_HINTS):
                raise
            # The container was created before the port clash; free the name.
            try:
                docker_env.remove_container(client.containers.get(options["name"]))
            except docker.errors.NotFound:
                pass
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
