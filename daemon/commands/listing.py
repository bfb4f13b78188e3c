"""`pgbackup list`: every backup with a manifest, newest first, local and offsite."""

from __future__ import annotations

import argparse
import json
import sys

from daemon.commands import Handler
from daemon.identity import describe_instances, split_by_owner, this_instance
from daemon.manifest import Manifest, scan_manifests
from daemon.progress import human_bytes
from daemon.settings import Settings


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Handler]:
    listing = subparsers.add_parser("list", help="list backups with their manifests, newest first",
                                  description="List every backup that has a manifest, newest first.")
    listing.add_argument("--json", action="store_true", help="print the manifests as a JSON array")
    return {"list": command_list}


def command_list(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here: the offsite listing brings boto3 (about 0.4 s of import time), which the
    # other verbs need not pay.
    from daemon.housekeeping.offsite import backup_locations

    scan = scan_manifests(settings.backup_dir, settings.signing_key)
    for path, problem in scan.unreadable:
        print(f"pgbackup: unreadable manifest {path.name}: {problem}", file=sys.stderr)
    for path, problem in scan.forged:
        print(f"pgbackup: TAMPERING? {path.name} is not listed: {problem}", file=sys.stderr)
    manifests, locations, warning = backup_locations(settings, scan.manifests)
    if warning:
        print(f"pgbackup: {warning}", file=sys.stderr)
    _, foreign = split_by_owner(manifests, this_instance(settings, create=False))
    for manifest in foreign:
        locations[manifest.file] = f"{locations.get(manifest.file, 'local')}, install {manifest.instance}"
    if foreign:
        print(f"pgbackup: {len(foreign)} backup(s) belong to other installs ({describe_instances(foreign)}); "
              "restore (without --instance) and retention leave them alone", file=sys.stderr)
    if args.json:
        records = [{**json.loads(m.to_json()), "location": locations.get(m.file, "local")} for m in manifests]
        print(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        print(_table(manifests, locations))
    return 0


def _table(manifests: list[Manifest], locations: dict[str, str] | None = None) -> str:
    locations = locations or {}
    rows = [("STARTED", "KIND", "TARGET", "SIZE", "WHERE", "FILE")]
    for manifest in manifests:
        rows.append((
            manifest.started_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
            manifest.kind + (" (kept forever)" if manifest.keep_forever else ""),
            manifest.target,
            human_bytes(manifest.size_bytes),
            locations.get(manifest.file, "local"),
            manifest.file,
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
