"""`pgbackup wal setup|status`: what the server needs for WAL streaming and what to change; the
archive, the newest base backup and the slot."""

from __future__ import annotations

import argparse
import json

from daemon.commands import Handler
from daemon.errors import PgBackupError
from daemon.manifest import scan_manifests
from daemon.settings import Settings
from daemon.wal import offsite as wal_offsite
from daemon.wal.archive import partial_segment, read_records
from daemon.wal.monitor import last_received
from daemon.wal.prerequisites import assess
from daemon.wal.server import resolve_endpoint, server_facts
from daemon.wal.setup import apply_setup
from daemon.wal.status import slot_state, summarize


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Handler]:
    wal = subparsers.add_parser("wal", help="WAL streaming for point-in-time recovery (docs/pitr.md)",
                                description="WAL streaming for point-in-time recovery (docs/pitr.md).")
    actions = wal.add_subparsers(dest="wal_action", required=True, metavar="ACTION")
    setup_parser = actions.add_parser(
        "setup", help="check the server's prerequisites and print what to change",
        description="Check the server's prerequisites for WAL streaming (wal_level, free WAL senders and slots, "
        "a replication connection, max_slot_wal_keep_size) and print what to change. Exit 1 if something that "
        "streaming needs is missing.")
    setup_parser.add_argument("--apply", action="store_true",
                              help="with POSTGRES_CONTAINER: allow replication in pg_hba.conf (and reload) and "
                              "create the slot; settings that need a restart are only printed")
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
    user = settings.replication_login[0]
    facts = server_facts(endpoint, settings.wal_slot_name)
    findings = assess(facts, settings.wal_slot_name, user)
    print(f"server {endpoint.address}, PostgreSQL {endpoint.server_version}, replication user {user!r}, "
          f"slot {settings.wal_slot_name!r} {'exists' if facts.slot_exists else 'not created yet'}")
    if not findings:
        print("ready for WAL streaming: set WAL_STREAMING=on")
        return 0
    for finding in findings:
        print(f"{'MISSING' if finding.blocking else 'ADVICE'}: {finding.problem}")
        print(f"  change: {finding.change}")
    return 1 if any(finding.blocking for finding in findings) else 0
