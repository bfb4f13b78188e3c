"""`pgbackup wal setup --apply`: the changes the sidecar can make safely itself, with
POSTGRES_CONTAINER: the pg_hba.conf line for replication (appended once, then a reload), the
slot, and synchronous_standby_names as WAL_SYNCHRONOUS asks (``synchronous.plan_apply``: set
while the receiver streams, reset when it is off; ALTER SYSTEM and a reload, since the setting
needs no restart). Settings that need a restart (wal_level, max_wal_senders) or a judgment
(max_slot_wal_keep_size, synchronous_commit, a list that names other standbys) are only printed."""

from __future__ import annotations

import docker

from daemon.errors import PgBackupError
from daemon.settings import Settings
from daemon.sources.connect import docker_client
from daemon.sources.docker_exec import DockerExecTransport
from daemon.wal.archive import wal_dir
from daemon.wal.server import (
    APPLICATION_NAME,
    ReplicationEndpoint,
    commit_settings,
    ensure_slot,
    receiver_streaming,
    replication_refusal,
)
from daemon.wal.synchronous import Plan, plan_apply

# Appends the line unless pg_hba.conf already has it: $1 the line, $2 the file.
_APPEND_ONCE = 'grep -qxF -- "$1" "$2" || printf "%s\\n" "$1" >> "$2"'


def hba_line(user: str) -> str:
    """Replication for ``user`` from the server's own subnets (the compose network), with a password."""
    return f"host replication {user} samenet scram-sha-256"


def apply_setup(settings: Settings, endpoint: ReplicationEndpoint,
                client: docker.DockerClient | None = None) -> list[str]:
    """Allow replication in pg_hba.conf if it is refused, and create the slot; what was done."""
    if not settings.postgres_container:
        raise PgBackupError("--apply needs POSTGRES_CONTAINER (it edits pg_hba.conf inside the database "
                            "container); with POSTGRES_HOST make the changes `pgbackup wal setup` prints")
    done = []
    if replication_refusal(endpoint) is not None:
        hba_file = endpoint.sql.query("SHOW hba_file")[0].strip()
        line = hba_line(settings.replication_login[0])
        transport = DockerExecTransport(client or docker_client(settings), settings.postgres_container)
        transport.run(["sh", "-c", _APPEND_ONCE, "sh", line, hba_file])
        endpoint.sql.query("SELECT pg_reload_conf()")
        done.append(f"pg_hba.conf ({hba_file}) has '{line}'; configuration reloaded")
    if not settings.wal_streaming and wal_dir(settings.backup_dir).is_dir():
        pass  # streaming was turned off: the daemon drops the slot, which would keep WAL for nobody
    elif ensure_slot(endpoint.sql, settings.wal_slot_name):
        done.append(f"slot {settings.wal_slot_name!r} created (WAL reserved from now on)")
    return done


def synchronous_plan(settings: Settings, endpoint: ReplicationEndpoint) -> Plan | None:
    """What --apply would do about synchronous_standby_names, or why it does nothing."""
    sql = endpoint.sql
    return plan_apply(commit_settings(sql), APPLICATION_NAME, wanted=settings.wal_synchronous,
                      receiver_streaming=receiver_streaming(sql))


def apply_synchronous(plan: Plan, endpoint: ReplicationEndpoint) -> None:
    """One statement at a time: ALTER SYSTEM refuses to run in a transaction block."""
    for statement in plan.statements:
        endpoint.sql.query(statement)
