"""The `pgbackup` command: the daemon and the one-shot operations around it."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pydantic import SecretStr

from daemon import __version__
from daemon.commands import (
    Handler,
    backup,
    config,
    listing,
    prune,
    recover_rows,
    restore,
    run,
    verify,
    volume,
    wal,
)
from daemon.errors import PgBackupError, SettingsError
from daemon.interrupt import Interrupted, StopOnSignals
from daemon.logs import RedactingStream, configure_logging, get_logger, redactor
from daemon.settings import Settings, load_settings

log = get_logger(__name__)

# In the order `pgbackup --help` lists them.
VERB_MODULES = (run, backup, listing, config, prune, restore, recover_rows, verify, volume, wal)
COMMANDS: dict[str, Handler] = {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgbackup",
        description="Scheduled, verified PostgreSQL backups next to a database container. "
        "Configured by environment variables (see settings.env.example).",
    )
    parser.add_argument("--version", action="version", version=f"pgbackup {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in VERB_MODULES:
        COMMANDS.update(module.add_commands(commands))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        for problem in error.problems:
            print(f"pgbackup: configuration error: {problem}", file=sys.stderr)
        return error.exit_code
    configure_logging(
        settings.log_level,
        stream=sys.stdout if args.command == "run" else sys.stderr,
        secrets=_secret_values(settings),
    )
    with redacted_output():
        return _run_command(settings, args)


@contextmanager
def redacted_output() -> Iterator[None]:
    """stdout and stderr mask the secrets while a command runs (failure reasons quote stderr)."""
    original = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (RedactingStream(stream, redactor.scrub) for stream in original)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = original


def _run_command(settings: Settings, args: argparse.Namespace) -> int:
    stop = StopOnSignals()
    if args.command != "run":  # the daemon stops on signals in its own way (service.py)
        stop.install()
    args.cancel = stop.cancel  # set by SIGTERM/SIGINT: the commands' threads see the stop
    try:
        status = COMMANDS[args.command](settings, args)
        return stop.exit_code(status) if status else status
    except Interrupted as error:
        return _stopped(args.command, error.signum)
    except PgBackupError as error:
        if stop.signum is not None:  # ended by the stop (Cancelled), not by a failure of its own
            return _stopped(args.command, stop.signum)
        log.error("command_failed", command=args.command, error=str(error))
        print(f"pgbackup: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as error:
        # BACKUP_DIR read-only or full, a path that is not a directory: the OS says what, no traceback.
        log.error("command_failed", command=args.command, error=str(error))
        print(f"pgbackup: {error}", file=sys.stderr)
        return 1


def _stopped(command: str, signum: int) -> int:
    name = signal.Signals(signum).name
    log.warning("command_stopped", command=command, signal=name)
    print(f"pgbackup: {command} stopped by {name}; what it had started was stopped and cleaned up "
          "(no partial backup is kept)", file=sys.stderr)
    return 128 + signum


# Kept out of `pgbackup config`, but an identifier rather than a secret: blanking it out of the
# logs would also blank out every word it happens to equal (an access key id "pgbackup").
NOT_REDACTED_IN_LOGS = frozenset({"aws_access_key_id"})


def _secret_values(settings: Settings) -> list[str]:
    secrets = [
        value.get_secret_value()
        for name, value in ((name, getattr(settings, name)) for name in type(settings).model_fields)
        if isinstance(value, SecretStr) and name not in NOT_REDACTED_IN_LOGS
    ]
    # Each NOTIFY_URLS entry on its own (the setting as a whole is already among the secrets).
    return secrets + settings.url_passwords() + settings.notify_url_list
