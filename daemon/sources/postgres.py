"""The PostgreSQL server as the daemon sees it: client tool command lines with the right
connection options, a few catalogue queries, and the server's version."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import ClientTooOld, CommandFailed, ConnectionFailed
from daemon.sources.transport import Transport

# A database that an interrupted DROP DATABASE left invalid (datconnlimit -2, PostgreSQL 15.4 and
# later) accepts no connection and pg_dumpall skips it: it is not backed up, but named.
LIST_DATABASES_SQL = (
    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND datconnlimit <> -2 "
    "ORDER BY datname"
)
INVALID_DATABASES_SQL = "SELECT datname FROM pg_database WHERE datconnlimit = -2 ORDER BY datname"
_VERSION = re.compile(rb"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
CLIENT_ROOT = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class ServerVersion:
    number: int  # server_version_num, e.g. 150018

    @property
    def major(self) -> int:
        return self.number // 10000

    @property
    def text(self) -> str:
        return f"{self.major}.{self.number % 10000}"


@dataclass(frozen=True)
class ConnectionOptions:
    user: str
    password: str | None = None
    host: str | None = None  # None: the server's local socket (inside its container)
    port: int = 5432
    bin_dir: Path | None = None
    lock_wait_timeout_seconds: int | None = None  # pg_dump and pg_dumpall give up waiting for a table lock then


DUMP_TOOLS = ("pg_dump", "pg_dumpall")


def lock_wait_option(program: str, seconds: int) -> list[str]:
    """``--lock-wait-timeout`` (in milliseconds, which every pg_dump version reads) for a dump tool:
    a dump queued behind another session's lock gives up instead of holding the backup lock."""
    return [f"--lock-wait-timeout={seconds * 1000}"] if program in DUMP_TOOLS else []


def conninfo_dbname(database: str) -> str:
    """A connection string naming ``database``, safe for any name (quotes, '=', spaces)."""
    escaped = database.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


class PostgresServer:
    def __init__(self, transport: Transport, options: ConnectionOptions):
        self.transport = transport
        self.options = options

    def tool(self, program: str, *args: str) -> list[str]:
        """argv for a client program, with connection options and never a password."""
        executable = str(self.options.bin_dir / program) if self.options.bin_dir else program
        argv = [executable, "--no-password", f"--username={self.options.user}"]
        if self.options.host:
            argv += [f"--host={self.options.host}", f"--port={self.options.port}"]
        if self.options.lock_wait_timeout_seconds:
            argv += lock_wait_option(program, self.options.lock_wait_timeout_seconds)
        return argv + list(args)

    def environment(self) -> dict[str, str]:
        env = {"PGCONNECT_TIMEOUT": "15", "PGAPPNAME": "pgbackup"}
        if self.options.password is not None:
            env["PGPASSWORD"] = self.options.password
        return env

    def query(self, sql: str, database: str = "postgres") -> list[str]:
        """Rows of a one-column query (NUL-separated, so any value survives)."""
        argv = self.tool(
            "psql", "-X", "--quiet", "--no-align", "--tuples-only", "--record-separator-zero",
            "--set=ON_ERROR_STOP=1", f"--dbname={conninfo_dbname(database)}", f"--command={sql}",
        )
        output = self.transport.run(argv, self.environment())
        return [row.decode("utf-8") for row in output.split(b"\0") if row.strip(b"\n")]

    def server_version(self) -> ServerVersion:
        try:
            rows = self.query("SHOW server_version_num")
        except CommandFailed as error:
            raise ConnectionFailed(
                f"cannot query PostgreSQL via {self.transport.description}: {error.stderr_tail or error}"
            ) from None
        return ServerVersion(int(rows[0].strip()))

    def list_databases(self) -> list[str]:
        """The databases a backup of everything covers: those that accept connections."""
        return self.query(LIST_DATABASES_SQL)

    def invalid_databases(self) -> list[str]:
        """Databases left invalid by an interrupted DROP DATABASE (they cannot be dumped)."""
        return self.query(INVALID_DATABASES_SQL)

    def run_stream(self, argv: Sequence[str], cancel: threading.Event | None = None):
        """``argv`` streamed with the connection's environment; a set ``cancel`` stops it (Transport.stream)."""
        return self.transport.stream(argv, self.environment(), cancel=cancel)


def parse_client_major(version_output: bytes) -> int | None:
    """17 from 'pg_dump (PostgreSQL) 17.2 (Debian ...)'."""
    match = _VERSION.search(version_output)
    return int(match.group(1)) if match else None


def installed_client_dirs(root: Path = CLIENT_ROOT) -> dict[int, Path]:
    """Client tool directories by major version, e.g. {15: /usr/lib/postgresql/15/bin}."""
    found: dict[int, Path] = {}
    if root.is_dir():
        for child in root.iterdir():
            if child.name.isdigit() and (child / "bin" / "pg_dump").exists():
                found[int(child.name)] = child / "bin"
    return found


def choose_client_dir(available: Mapping[int, Path], server_major: int) -> Path | None:
    """The matching major if installed, else the oldest newer one; None if all are older."""
    candidates = sorted(major for major in available if major >= server_major)
    return available[candidates[0]] if candidates else None


def check_client_version(transport: Transport, options: ConnectionOptions, server: ServerVersion) -> None:
    """Refuse a pg_dump older than the server: it would fail or silently miss new features."""
    executable = str(options.bin_dir / "pg_dump") if options.bin_dir else "pg_dump"
    try:
        output = transport.run([executable, "--version"])
    except CommandFailed as error:
        raise ClientTooOld(f"cannot run {executable} --version: {error}") from None
    client_major = parse_client_major(output)
    if client_major is None or client_major < server.major:
        raise ClientTooOld(
            f"{executable} is version {client_major or 'unknown'} but the server is {server.text}; "
            f"install postgresql-client-{server.major} or newer in the sidecar"
        )
