"""The database server as WAL streaming sees it: a replication endpoint over TCP (resolved
again for every start of the receiver: a container that was killed and started again may have
another address), the physical slot, and the facts the prerequisite check reads."""

from __future__ import annotations

from dataclasses import dataclass, replace

import docker

from daemon.errors import ConnectionFailed
from daemon.settings import Settings
from daemon.sources.connect import CHILD_PATH, Connection, connect
from daemon.sources.postgres import PostgresServer
from daemon.wal.prerequisites import ServerFacts
from daemon.wal.synchronous import CommitSettings

APPLICATION_NAME = "pgbackup_wal"  # in pg_stat_replication; synchronous_standby_names names it (WAL_SYNCHRONOUS)
# pg_basebackup's own name: a base backup is never mistaken for the receiver in pg_stat_replication.
BASE_BACKUP_APPLICATION_NAME = "pgbackup_base"
# Each value behind a '=' (query() leaves out empty rows, and synchronous_standby_names is often empty).
_COMMIT_SETTINGS_SQL = """
SELECT '=' || value FROM (VALUES
  (1, current_setting('synchronous_commit')),
  (2, current_setting('synchronous_standby_names')),
  (3, coalesce((SELECT sourcefile FROM pg_settings WHERE name = 'synchronous_standby_names'), ''))
) AS settings (position, value) ORDER BY position
"""
# One row of facts, separated by '|' (the slot name is validated by Settings: [a-z0-9_]).
_FACTS_SQL = """
SELECT concat_ws('|',
  current_setting('wal_level'),
  current_setting('max_wal_senders'),
  (SELECT count(*) FROM pg_stat_replication),
  current_setting('max_replication_slots'),
  (SELECT count(*) FROM pg_replication_slots),
  (SELECT setting FROM pg_settings WHERE name = 'max_slot_wal_keep_size'),
  (SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND slot_type = 'physical'),
  (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'),
  current_setting('server_version_num'))
"""


@dataclass(frozen=True)
class ReplicationEndpoint:
    """``sql`` runs catalogue queries as POSTGRES_USER (by whatever method reaches the server);
    ``replication`` runs client tools over TCP as the replication user."""

    sql: PostgresServer
    replication: PostgresServer
    server_major: int
    server_version: str = ""

    def environment(self, application_name: str = APPLICATION_NAME) -> dict[str, str]:
        """What a replication tool's process gets: a fixed PATH and locale, the password, and the
        application name it shows in pg_stat_replication (the receiver's by default)."""
        return {"PATH": CHILD_PATH, "LC_ALL": "C.UTF-8", **self.replication.environment(),
                "PGAPPNAME": application_name}

    @property
    def address(self) -> str:
        return f"{self.replication.options.host}:{self.replication.options.port}"


def resolve_endpoint(settings: Settings, client: docker.DockerClient | None = None) -> ReplicationEndpoint:
    """Connect as the backups do and derive the replication endpoint: the same TCP address
    (POSTGRES_HOST, or the container's own address), REPLICATION_USER and REPLICATION_PASSWORD."""
    connection = connect(settings, client)
    return endpoint_of(connection, settings)


def endpoint_of(connection: Connection, settings: Settings) -> ReplicationEndpoint:
    if connection.method == "docker_exec":
        raise ConnectionFailed(
            "WAL streaming and base backups need a TCP connection to PostgreSQL, and only docker exec works: "
            "set POSTGRES_PASSWORD, put the sidecar on the database container's network and use client tools "
            f"of version {connection.version.major} or newer (or set POSTGRES_HOST)"
        )
    user, password = settings.replication_login
    options = replace(connection.server.options, user=user, password=password)
    replication = PostgresServer(connection.server.transport, options)
    return ReplicationEndpoint(connection.server, replication, connection.version.major, connection.version.text)


def server_facts(endpoint: ReplicationEndpoint, slot: str) -> ServerFacts:
    row = endpoint.sql.query(_FACTS_SQL.format(slot=slot))[0].strip().split("|")
    wal_level, senders, senders_used, slots, slots_used, keep_size, slot_found, segment_size, version = row
    return ServerFacts(
        wal_level=wal_level, max_wal_senders=int(senders), wal_senders_in_use=int(senders_used),
        max_replication_slots=int(slots), slots_in_use=int(slots_used),
        max_slot_wal_keep_size_mb=int(keep_size), slot_exists=slot_found == "1",
        segment_size=int(segment_size), server_version_num=int(version),
        replication_refused=replication_refusal(endpoint),
    )


def commit_settings(sql: PostgresServer) -> CommitSettings:
    """synchronous_commit (as this session sees it), synchronous_standby_names and the file that
    sets it (empty unless the user may read pg_settings.sourcefile)."""
    level, names, source_file = (row.strip("\n")[1:] for row in sql.query(_COMMIT_SETTINGS_SQL))
    return CommitSettings(standby_names=names, synchronous_commit=level, source_file=source_file)


def receiver_streaming(sql: PostgresServer) -> bool:
    """True while a connection named like the receiver streams WAL (pg_stat_replication)."""
    rows = sql.query(f"SELECT count(*) FROM pg_stat_replication WHERE application_name = '{APPLICATION_NAME}' "
                     "AND state = 'streaming'")
    return int(rows[0].strip()) > 0


def replication_refusal(endpoint: ReplicationEndpoint) -> str | None:
    """Why a replication connection as the replication user fails (pg_hba.conf, the role's
    REPLICATION attribute, the password), or None when IDENTIFY_SYSTEM answers."""
    argv = endpoint.replication.tool("psql", "-X", "--no-align", "--tuples-only",
                                     "--dbname=replication=true", "--command=IDENTIFY_SYSTEM")
    try:
        endpoint.replication.transport.run(argv, endpoint.environment())
    except Exception as error:  # noqa: BLE001 - every failure is the answer to the question
        return str(getattr(error, "stderr_tail", "") or error)
    return None


def ensure_slot(sql: PostgresServer, slot: str) -> bool:
    """Create the physical slot, reserving WAL at once, unless it exists; True when created."""
    created = sql.query(
        f"SELECT pg_create_physical_replication_slot('{slot}', true) FROM (SELECT 1) AS one "
        f"WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}')"
    )
    return bool(created)


def drop_slot(sql: PostgresServer, slot: str) -> bool:
    """Drop the slot if it exists and nobody reads it; True when dropped."""
    dropped = sql.query(  # pg_drop_replication_slot returns void: an empty row, which query() skips
        f"SELECT 'dropped' FROM (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        f"WHERE slot_name = '{slot}' AND slot_type = 'physical' AND NOT active) AS dropped"
    )
    return bool(dropped)
