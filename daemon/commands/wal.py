"""`pgbackup wal setup|status`: what the server needs for WAL streaming and what to change; the
archive, the newest base backup and the slot."""

from __future__ import annotations

import argparse
import json
import time

from daemon.commands import Handler
from daemon.errors import PgBackupError
from daemon.manifest import scan_manifests
from daemon.settings import Settings
from daemon.wal import offsite as wal_offsite
from daemon.wal.archive import partial_segment, read_records
from daemon.wal.monitor import last_received
from daemon.wal.prerequisites import assess
from daemon.wal.server import APPLICATION_NAME, ReplicationEndpoint, commit_settings, resolve_endpoint, server_facts
from daemon.wal.setup import apply_setup, apply_synchronous, synchronous_plan
from daemon.wal.status import slot_state, summarize
from daemon.wal.synchronous import (
    CommitSettings,
    Dependency,
    assess_synchronous,
    commit_meaning,
    parse_standby_names,
    receiver_dependency,
)

RELOAD_CHECKS = 50
RELOAD_CHECK_SECONDS = 0.1


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Handler]:
    wal = subparsers.add_parser("wal", help="WAL streaming for point-in-time recovery (docs/pitr.md)",
                                description="WAL streaming for point-in-time recovery (docs/pitr.md).")
    actions = wal.add_subparsers(dest="wal_action", required=True, metavar="ACTION")
    setup_parser = actions.add_parser(
        "setup", help="check the server's prerequisites and print what to change",
        description="Check the server's prerequisites for WAL streaming (wal_level, free WAL senders and slots, "
        "a replication connection, max_slot_wal_keep_size) and synchronous_standby_names and synchronous_commit "
        "against WAL_SYNCHRONOUS, and print what to change. Exit 1 if something that streaming needs is missing, "
        "or if commits do not wait for the sidecar as WAL_SYNCHRONOUS asks.")
    setup_parser.add_argument("--apply", action="store_true",
                              help="with POSTGRES_CONTAINER: allow replication in pg_hba.conf (and reload), "
                              "create the slot, and set synchronous_standby_names to the receiver while it streams "
                              "with WAL_SYNCHRONOUS=on, or reset it with WAL_SYNCHRONOUS off (ALTER SYSTEM and a "
                              "reload); settings that need a restart or a judgment are only printed")
    status_parser = actions.add_parser(
        "status", help="the WAL archive (span, gaps, S3 copies), the newest base backup, the slot and the lag",
        description="The WAL archive in BACKUP_DIR/wal/ (oldest and newest segment, the segment being received, "
        "gaps, files not yet copied to S3), the newest base backup, and the slot on the server: the WAL it keeps "
        "against its limit, wal_status, the receiver's lag in bytes and the time up to which recovery is "
        "possible. Exit 1 if the archive has a gap.")
    status_parser.add_argument("--json", action="store_true", help="print it as JSON")
    return {"wal": command_wal}


def command_wal(settings: Settings, args: argparse.Namespace) -> int:
    if args.wal_action == "status":
        return status(settings, as_json=args.json)
    return setup(settings, apply=args.apply)


def status(settings: Settings, *, as_json: bool = False) -> int:
    key = settings.signing_key  # records and manifests not signed with it count as missing
    summary = summarize(read_records(settings.backup_dir, key), partial_segment(settings.backup_dir),
                        scan_manifests(settings.backup_dir, key).manifests, offsite=wal_offsite.wanted(settings))
    try:
        summary.slot = slot_state(resolve_endpoint(settings), settings.wal_slot_name,
                                  settings.wal_slot_retained_max_bytes,
                                  last_received(settings.backup_dir))
    except PgBackupError as error:
        summary.slot = {"name": settings.wal_slot_name, "error": str(error)}
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print("\n".join(summary.lines()))
    return 1 if summary.gaps else 0


def setup(settings: Settings, *, apply: bool = False) -> int:
    endpoint = resolve_endpoint(settings)
    if apply:
        for change in apply_setup(settings, endpoint):
            print(f"APPLIED: {change}")
        apply_synchronous_plan(settings, endpoint)
    user = settings.replication_login[0]
    facts = server_facts(endpoint, settings.wal_slot_name)
    findings = assess(facts, settings.wal_slot_name, user)
    commit = commit_settings(endpoint.sql)
    findings_synchronous = assess_synchronous(commit, APPLICATION_NAME, wanted=settings.wal_synchronous,
                                              streaming=settings.wal_streaming)
    print(f"server {endpoint.address}, PostgreSQL {endpoint.server_version}, replication user {user!r}, "
          f"slot {settings.wal_slot_name!r} {'exists' if facts.slot_exists else 'not created yet'}")
    for line in synchronous_lines(commit, settings.wal_synchronous):
        print(line)
    if not findings:
        print("ready for WAL streaming" + ("" if settings.wal_streaming else ": set WAL_STREAMING=on"))
    for finding in findings + findings_synchronous:
        print(f"{'MISSING' if finding.blocking else 'ADVICE'}: {finding.problem}")
        print(f"  change: {finding.change}")
    return 1 if any(finding.blocking for finding in findings + findings_synchronous) else 0


def apply_synchronous_plan(settings: Settings, endpoint: ReplicationEndpoint) -> None:
    plan = synchronous_plan(settings, endpoint)
    if plan is None:
        return
    if not plan.changes:
        print(f"NOT APPLIED: {plan.text}")
        return
    apply_synchronous(plan, endpoint)
    # The reload is a signal to the server: wait until new sessions see the change.
    for _ in range(RELOAD_CHECKS):
        if synchronous_plan(settings, endpoint) is None:
            break
        time.sleep(RELOAD_CHECK_SECONDS)
    print(f"APPLIED: {plan.text}")


def synchronous_lines(commit: CommitSettings, wanted: bool) -> list[str]:
    """What the two settings mean for the sidecar, when WAL_SYNCHRONOUS is on or they involve it."""
    dependency = receiver_dependency(parse_standby_names(commit.standby_names), APPLICATION_NAME)
    if not wanted and dependency is Dependency.NONE:
        return []
    return [f"WAL_SYNCHRONOUS is {'on' if wanted else 'off'}; the receiver connects as {APPLICATION_NAME!r}",
            f"synchronous_standby_names = {commit.standby_names!r}: {dependency.value}",
            f"synchronous_commit = {commit.synchronous_commit!r}: {commit_meaning(commit.synchronous_commit)}"]
