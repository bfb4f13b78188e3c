"""What WAL streaming needs from the server, and what to change when something is missing (pure).

The receiver holds one WAL sender and one slot; a base backup holds a second sender while it
runs. A slot that nobody reads keeps WAL on the server without end, so an unlimited
``max_slot_wal_keep_size`` is reported too: not as missing, but with a recommended limit.
"""

from __future__ import annotations

from dataclasses import dataclass

PREREQUISITES_PROBLEM = "wal_prerequisites_missing"  # on /healthz until streaming works
SENDERS_NEEDED = 2  # the receiver and a base backup
RECOMMENDED_KEEP_SIZE = "10GB"  # about a day of WAL at 7 MB/min; well below the free space it must leave
LOWEST_SERVER_MAJOR = 13  # max_slot_wal_keep_size


@dataclass(frozen=True)
class ServerFacts:
    wal_level: str
    max_wal_senders: int
    wal_senders_in_use: int
    max_replication_slots: int
    slots_in_use: int
    max_slot_wal_keep_size_mb: int  # -1: unlimited
    slot_exists: bool
    segment_size: int
    server_version_num: int
    replication_refused: str | None  # why a replication connection failed, None when it worked


@dataclass(frozen=True)
class Finding:
    """One thing missing (``blocking``) or advised, and the change that fixes it."""

    blocking: bool
    problem: str
    change: str


def assess(facts: ServerFacts, slot: str, user: str, receiver_connected: bool = False) -> list[Finding]:
    """Everything missing for WAL streaming on slot ``slot`` as ``user``, blocking findings first."""
    findings = []
    if facts.server_version_num // 10000 < LOWEST_SERVER_MAJOR:
        findings.append(Finding(True, f"PostgreSQL {facts.server_version_num // 10000} is older than "
                                f"{LOWEST_SERVER_MAJOR}", "upgrade PostgreSQL"))
    if facts.wal_level not in ("replica", "logical"):
        findings.append(Finding(True, f"wal_level is {facts.wal_level!r}; streaming needs 'replica' or 'logical'",
                                "ALTER SYSTEM SET wal_level = 'replica'; then restart PostgreSQL"))
    free_senders = facts.max_wal_senders - facts.wal_senders_in_use + (1 if receiver_connected else 0)
    if free_senders < SENDERS_NEEDED:
        findings.append(Finding(
            True, f"max_wal_senders is {facts.max_wal_senders} with {facts.wal_senders_in_use} in use; the "
            f"receiver and a base backup need {SENDERS_NEEDED} free",
            f"ALTER SYSTEM SET max_wal_senders = {facts.wal_senders_in_use + SENDERS_NEEDED + 2}; then restart "
            "PostgreSQL"))
    if not facts.slot_exists and facts.slots_in_use >= facts.max_replication_slots:
        findings.append(Finding(
            True, f"max_replication_slots is {facts.max_replication_slots} and all are taken; slot {slot!r} "
            "cannot be created",
            f"ALTER SYSTEM SET max_replication_slots = {facts.slots_in_use + 2}; then restart PostgreSQL"))
    if facts.replication_refused is not None:
        findings.append(Finding(
            True, f"a replication connection as {user!r} is refused: {facts.replication_refused}",
            f"allow it in pg_hba.conf, e.g. 'host replication {user} samenet scram-sha-256', then "
            "SELECT pg_reload_conf() (`pgbackup wal setup --apply` does both); the role needs REPLICATION "
            f"(ALTER ROLE {user} REPLICATION) unless it is a superuser"))
    if facts.max_slot_wal_keep_size_mb < 0:
        findings.append(Finding(
            False, "max_slot_wal_keep_size is unlimited (-1): if the receiver stops, the slot keeps WAL until "
            "the server's disk is full",
            f"ALTER SYSTEM SET max_slot_wal_keep_size = '{RECOMMENDED_KEEP_SIZE}'; SELECT pg_reload_conf(); "
            "(choose well below the free space of the data volume)"))
    return findings


def missing_text(findings: list[Finding]) -> str | None:
    """The blocking findings in one line, or None when nothing blocks streaming."""
    blocking = [finding.problem for finding in findings if finding.blocking]
    return "; ".join(blocking) if blocking else None
