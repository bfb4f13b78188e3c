"""`pgbackup restore point-in-time`: a base backup and the streamed WAL into a volume, recovered
to a time (docs/pitr.md). Part of the `restore` verb (restore.py adds its parser here)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from daemon.commands.locking import command_lock
from daemon.settings import Settings
from daemon.wal.pitr import parse_target, restore_point_in_time


def add_parser(what: argparse._SubParsersAction) -> None:
    parser = what.add_parser(
        "point-in-time", help="a base backup and the streamed WAL into a volume, recovered to a time",
        description="Unpack the newest base backup that finished before the target into VOLUME (created if "
        "missing; a volume that holds a data directory is refused), stage the WAL, recover to the target in a "
        "throwaway container and promote. The volume then starts as a normal server (docs/pitr.md).")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="'YYYY-mm-dd HH:MM:SS'",
                        help="the time to recover to, in TZ unless it has an offset (+01:00)")
    target.add_argument("--latest", action="store_true", help="everything received")
    parser.add_argument("--volume", required=True, metavar="NAME", help="the Docker volume to recover into")
    parser.add_argument("--image", metavar="IMAGE",
                        help="PostgreSQL image of the server's major version (default: POSTGRES_CONTAINER's image)")


def command_point_in_time(settings: Settings, args: argparse.Namespace) -> int:
    target = None if args.latest else parse_target(args.to, settings.timezone)
    with command_lock(settings, "restore point-in-time"):
        started = datetime.now(settings.timezone)
        report = restore_point_in_time(settings, target, args.volume, args.image)
    print(f"pgbackup: recovered volume {report.volume} from {report.base} to {report.target}: the last "
          f"transaction replayed committed at {report.reached or 'unknown'}; {report.segments_staged} WAL files, "
          f"{report.seconds:.1f} s (started {started.isoformat(sep=' ', timespec='seconds')})", file=sys.stderr)
    print(report.volume)
    return 0
