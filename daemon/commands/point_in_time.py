"""`pgbackup restore point-in-time`: a base backup and the streamed WAL into a volume, recovered
to a time (docs/pitr.md). Part of the `restore` verb (restore.py adds its parser here)."""

from __future__ import annotations

import argparse
import sys

from daemon.commands.locking import command_lock
from daemon.settings import Settings
from daemon.wal.pitr import describe_reached, parse_target, restore_point_in_time
from daemon.wal.recovery import RecoveryReport


def add_parser(what: argparse._SubParsersAction) -> None:
    parser = what.add_parser(
        "point-in-time", help="a base backup and the streamed WAL into a volume, recovered to a time",
        description="Unpack the newest base backup that finished before the target into VOLUME (created if "
        "missing; a volume that holds data is refused unless --force; one that a running container uses always "
        "is), stage the WAL, recover to the target in a throwaway container and promote. A base backup or WAL "
        "file missing in BACKUP_DIR is fetched from S3 and checked. The volume then starts as a normal server "
        "(docs/pitr.md).")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="'YYYY-mm-dd HH:MM:SS'",
                        help="the time to recover to, in TZ unless it has an offset (+01:00)")
    target.add_argument("--latest", action="store_true", help="everything received")
    parser.add_argument("--volume", required=True, metavar="NAME", help="the Docker volume to recover into")
    parser.add_argument("--force", action="store_true",
                        help="delete the volume's current content first (it is gone for good), as restore-volume "
                             "--force does")
    parser.add_argument("--image", metavar="IMAGE",
                        help="PostgreSQL image of the server's major version (default: POSTGRES_CONTAINER's image)")
    parser.add_argument("--instance", metavar="NAME",
                        help="choose among the base backups of this install (default: this install's own)")


def command_point_in_time(settings: Settings, args: argparse.Namespace) -> int:
    target = None if args.latest else parse_target(args.to, settings.timezone)
    with command_lock(settings, "restore point-in-time"):
        report = restore_point_in_time(settings, target, args.volume, args.image, force=args.force,
                                       instance_name=args.instance)
    for line in report_lines(report, target):
        print(f"pgbackup: {line}", file=sys.stderr)
    print(report.volume)
    return 0


def report_lines(report: RecoveryReport, target) -> list[str]:
    """What the recovery did, for the operator: from what, to when, how long."""
    lines = [f"recovered volume {report.volume} from {report.base} in {report.seconds:.1f} s "
             f"({report.segments_staged} WAL files"
             + (f", {len(report.fetched_offsite)} files fetched from S3" if report.fetched_offsite else "")
             + (", the volume's previous content deleted" if report.volume_wiped else "") + ")",
             describe_reached(report.reached, target)]
    if not report.partial_staged:
        lines.append("no local .partial segment (it is never copied to S3): recovery reached at most the end of "
                     "the newest complete WAL segment")
    return lines
