"""`pgbackup verify [ARTIFACT]`: prove backups restorable (daemon.verify)."""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.commands import Handler
from daemon.errors import PgBackupError
from daemon.settings import Settings
from daemon.verify.verify import verify_artifact, verify_latest


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Handler]:
    verify = subparsers.add_parser(
        "verify", help="prove backups restorable: checksum, decompression, restore into a throwaway container",
        description="Check an artifact (or, by default, the newest full backup and each database's newest dump): "
        "sha256, complete decompression, then a restore into a throwaway PostgreSQL container compared with the "
        "manifest.",
    )
    verify.add_argument("artifact", nargs="?", type=Path, help="the artifact to verify (default: --latest)")
    verify.add_argument("--latest", action="store_true",
                        help="the newest full backup and each database's newest dump (the default)")
    verify.add_argument("--no-restore", action="store_true", help="only the checks that need no container")
    return {"verify": command_verify}


def command_verify(settings: Settings, args: argparse.Namespace) -> int:
    if args.artifact and args.latest:
        raise PgBackupError("give either an ARTIFACT or --latest, not both")
    if args.artifact:
        results = [verify_artifact(settings, args.artifact, restore=not args.no_restore)]
    else:
        results = verify_latest(settings, restore=not args.no_restore)
    for result in results:
        print(result.summary())
    return 0 if all(result.ok for result in results) else 1
