"""`pgbackup restore-volume` and `pgbackup clone-volume`.

(`pgbackup backup volume` is a choice of the `backup` verb; it calls
daemon.volumes.snapshot.run_volume_snapshot.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.commands import Handler
from daemon.commands.locking import command_lock
from daemon.logs import get_logger
from daemon.settings import Settings
from daemon.sources.connect import docker_client
from daemon.volumes.transfer import TransferResult, clone_volume, restore_volume

log = get_logger(__name__)

def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Handler]:
    restore = subparsers.add_parser(
        "restore-volume", help="unpack a volume snapshot into a Docker volume",
        description="Check a postgres_volume_*.tar.gz against its manifest (size, sha256), then unpack it "
        "into the volume, keeping numeric owners, modes and times, so PostgreSQL starts on it. The volume "
        "is created when missing; a non-empty one is refused unless --force; one that a running container "
        "uses is always refused.",
    )
    restore.add_argument("artifact", type=Path, metavar="ARTIFACT", help="the snapshot file (its manifest lies next to it)")
    restore.add_argument("--volume", required=True, metavar="NAME", help="the Docker volume to restore into")
    restore.add_argument("--force", action="store_true",
                         help="delete the volume's current content first (it is gone for good)")

    clone = subparsers.add_parser(
        "clone-volume", help="copy one Docker volume into another (owners and modes kept)",
        description="Copy the content of SOURCE into DEST (created when missing), keeping numeric owners, "
        "modes and times. A SOURCE that a running container uses is refused unless --stop, which stops "
        "POSTGRES_CONTAINER (only that container) for the copy and always starts it again. DEST must not "
        "be used by a running container and must be empty unless --force.",
    )
    clone.add_argument("source", metavar="SOURCE", help="the volume to copy")
    clone.add_argument("dest", metavar="DEST", help="the volume to copy into")
    clone.add_argument("--force", action="store_true", help="delete DEST's current content first (gone for good)")
    clone.add_argument("--stop", action="store_true",
                       help="stop POSTGRES_CONTAINER while SOURCE is copied, as a volume snapshot does")
    return {"restore-volume": command_restore_volume, "clone-volume": command_clone_volume}


def command_restore_volume(settings: Settings, args: argparse.Namespace) -> int:
    with command_lock(settings, "restore-volume"):
        result = restore_volume(settings, docker_client(settings), args.artifact, args.volume, force=args.force)
    _print(result, f"restored {args.artifact.name} into volume {result.volume!r}")
    return 0


def command_clone_volume(settings: Settings, args: argparse.Namespace) -> int:
    with command_lock(settings, "clone-volume"):
        result = clone_volume(
            settings, docker_client(settings), args.source, args.dest, force=args.force, stop=args.stop
        )
    note = f"copied volume {args.source!r} into {result.volume!r}"
    if result.stop_report and result.stop_report.stopped:
        names = ", ".join(ref.name for ref in result.stop_report.stopped)
        note += f" (stopped {names} for {result.stop_report.downtime_seconds:.1f} s)"
    _print(result, note)
    return 0


def _print(result: TransferResult, note: str) -> None:
    details = [f"{result.entries} entries"]
    if result.pg_version:
        details.append(f"PG_VERSION {result.pg_version}")
    if result.created:
        details.append("volume created")
    if result.wiped:
        details.append("previous content deleted")
    print(f"{note}: {', '.join(details)}")
