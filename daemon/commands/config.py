"""`pgbackup config`: the effective settings, validated, secrets masked."""

from __future__ import annotations

import argparse
import json

from daemon.commands import Handler
from daemon.settings import Settings


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Handler]:
    config = subparsers.add_parser("config", help="show the effective settings, secrets masked",
                                 description="Validate the environment and show the effective settings.")
    config.add_argument("--json", action="store_true", help="print them as JSON")
    return {"config": command_config}


def command_config(settings: Settings, args: argparse.Namespace) -> int:
    shown = settings.masked()
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        for name, value in shown.items():
            print(f"{name}={_config_value(value)}")
    return 0


def _config_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ";".join(f"{db}:{','.join(tables)}" for db, tables in value.items())
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
