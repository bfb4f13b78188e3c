"""The `pgbackup` command: the daemon and the one-shot operations around it."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import SecretStr

from daemon import __version__
from daemon.commands import FEATURE_COMMAND_MODULES
from daemon.errors import PgBackupError, SettingsError
from daemon.health import HealthState
from daemon.logs import configure_logging, get_logger
from daemon.manifest import Manifest, scan_manifests
from daemon.metrics import Metrics
from daemon.progress import human_bytes
from daemon.runner import BackupRunner, RunOutcome
from daemon.settings import Settings, load_settings

log = get_logger("daemon.cli")

BACKUP_CHOICES = {
    "full": "pg_dumpall of the whole server (roles, globals, every database) -> backup_all_*.sql.gz",
    "databases": "pg_dump of each database (BACKUP_DATABASES, or every one) -> <db>_*.dump",
    "database": "pg_dump of one database: pgbackup backup database NAME",
    "tables": "the BACKUP_TABLES selections, one artifact per database",
    "pre-migration": "a full backup kept forever -> backup_before_migration_*.sql.gz",
    "volume": "a snapshot of VOLUME_NAME, POSTGRES_CONTAINER stopped meanwhile -> postgres_volume_*.tar.gz",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgbackup",
        description="Scheduled, verified PostgreSQL backups next to a database container. "
        "Configured by environment variables (see settings.env.example).",
    )
    parser.add_argument("--version", action="version", version=f"pgbackup {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("run", help="run the daemon: scheduled backups, /metrics and /healthz",
                        description="Run the daemon in the foreground; logs are JSON lines on stdout.")

    backup = commands.add_parser(
        "backup", help="take a backup now and print the artifact paths",
        description="Take one backup now, print each artifact's path, exit non-zero if any part failed.\n\n"
        + "\n".join(f"  {name:14} {text}" for name, text in BACKUP_CHOICES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backup.add_argument("what", choices=list(BACKUP_CHOICES), metavar="WHAT",
                        help="one of: " + ", ".join(BACKUP_CHOICES))
    backup.add_argument("name", nargs="?", help="the database, for 'backup database NAME'")
    backup.add_argument("--no-wait", action="store_true",
                        help="fail at once (exit 3) instead of waiting when another backup is running")

    listing = commands.add_parser("list", help="list backups with their manifests, newest first",
                                  description="List every backup that has a manifest, newest first.")
    listing.add_argument("--json", action="store_true", help="print the manifests as a JSON array")

    config = commands.add_parser("config", help="show the effective settings, secrets masked",
                                 description="Validate the environment and show the effective settings.")
    config.add_argument("--json", action="store_true", help="print them as JSON")

    for module_name in FEATURE_COMMAND_MODULES:
        module = importlib.import_module(module_name)
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
    try:
        return COMMANDS[args.command](settings, args)
    except PgBackupError as error:
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


def command_run(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.service import run_daemon

    return run_daemon(settings)


def command_backup(settings: Settings, args: argparse.Namespace) -> int:
    request = args.what.replace("-", "_")
    if request == "database" and not args.name:
        raise PgBackupError("'backup database' needs the database name: pgbackup backup database NAME")
    if request != "database" and args.name:
        raise PgBackupError(f"'backup {args.what}' takes no name")
    if request == "tables" and not settings.backup_tables:
        raise PgBackupError("BACKUP_TABLES is empty: set e.g. BACKUP_TABLES='authdb:users;admindb:documents'")
    now = datetime.now(settings.timezone)
    metrics = Metrics()
    runner = BackupRunner(settings, metrics, HealthState(now, timedelta(hours=settings.backup_max_age_hours)))
    # A backup taken by hand gets what a scheduled one gets: run log, offsite copy,
    # notification and the retention sweep after success.
    from daemon.service import install_features

    install_features(settings, runner, metrics)
    if request == "volume":
        from daemon.volumes.snapshot import run_volume_snapshot

        return _report(run_volume_snapshot(runner, wait=not args.no_wait), settings)
    outcome = runner.run(request, args.name, wait=not args.no_wait)
    return _report(outcome, settings)


def _report(outcome: RunOutcome, settings: Settings) -> int:
    for manifest in outcome.artifacts:
        print(settings.backup_dir / manifest.file)
    for failure in outcome.failures:
        print(f"pgbackup: {failure.kind} backup of {failure.target} failed: {failure.error}", file=sys.stderr)
    return 0 if outcome.ok else 1


def command_list(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.offsite import backup_locations

    scan = scan_manifests(settings.backup_dir)
    for path, problem in scan.unreadable:
        print(f"pgbackup: unreadable manifest {path.name}: {problem}", file=sys.stderr)
    manifests, locations, warning = backup_locations(settings, scan.manifests)
    if warning:
        print(f"pgbackup: {warning}", file=sys.stderr)
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


def _secret_values(settings: Settings) -> list[str]:
    return [
        value.get_secret_value()
        for value in (getattr(settings, name) for name in type(settings).model_fields)
        if isinstance(value, SecretStr)
    ]


COMMANDS = {
    "run": command_run,
    "backup": command_backup,
    "list": command_list,
    "config": command_config,
}
