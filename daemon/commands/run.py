"""`pgbackup run`: the daemon in the foreground (daemon.service)."""

from __future__ import annotations

import argparse

from daemon.commands import Handler
from daemon.settings import Settings


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Handler]:
    subparsers.add_parser("run", help="run the daemon: scheduled backups, /metrics and /healthz",
                          description="Run the daemon in the foreground; logs are JSON lines on stdout.")
    return {"run": command_run}


def command_run(settings: Settings, args: argparse.Namespace) -> int:
    # Imported when the verb runs: the daemon's assembly brings boto3 (about 0.4 s of import
    # time) that the other verbs of this command line need not pay.
    from daemon.service import run_daemon

    return run_daemon(settings)
