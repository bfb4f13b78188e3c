"""Which backup a restore uses: the newest one, the newest taken before a moment, or a
file named on the command line; always one with a manifest, never a guess.

A backup dated in the future (taken while the clock was wrong) is never picked by --latest or
--before: its time is unknown, so "newest" means nothing for it. The newest believable backup
is picked and the skipped ones are named; when only future-dated ones exist the selection
fails and says to pick one with --from PATH.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.clock import describe_future, is_future
from daemon.errors import PgBackupError
from daemon.identity import Instance, describe_instances, split_by_owner
from daemon.logs import get_logger
from daemon.manifest import Manifest, manifest_path, read_manifest, scan_manifests

log = get_logger(__name__)

FULL_KINDS = ("full", "pre_migration")
BEFORE_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


class SelectionError(PgBackupError):
    """No backup matches what the restore asked for."""

    exit_code = 2


@dataclass(frozen=True)
class Choice:
    """How the user picked the backup: --latest, --before T or --from PATH."""

    latest: bool = False
    before: datetime | None = None
    path: Path | None = None
    now: datetime | None = None  # backups dated after it (beyond daemon.clock's tolerance) are not picked


@dataclass(frozen=True)
class Selected:
    manifest: Manifest
    path: Path
    skipped_future: tuple[Manifest, ...] = ()  # newer-looking candidates dated in the future

    @property
    def is_full(self) -> bool:
        return self.manifest.kind in FULL_KINDS


def owned_candidates(manifests: list[Manifest], instance: Instance, chosen: str | None
                     ) -> tuple[list[Manifest], list[Manifest]]:
    """(the candidates a restore may pick, the others): this install's backups, or with
    ``--instance NAME`` only that install's."""
    if chosen is None:
        return split_by_owner(manifests, instance)
    return ([m for m in manifests if m.instance == chosen], [m for m in manifests if m.instance != chosen])


def with_other_installs(error: SelectionError, others: list[Manifest], wanted) -> SelectionError:
    """The selection error, plus the other installs' backups that would have matched."""
    matching = [manifest for manifest in others if wanted(manifest)]
    if not matching:
        return error
    return SelectionError(f"{error}; backups of other installs match: {describe_instances(matching)}; "
                          "to restore one of them, add --instance NAME")


def parse_before(text: str, zone: ZoneInfo) -> datetime:
    """'2025-10-15 14:00' in TZ (an ISO time with an offset is taken as it is)."""
    text = text.strip()
    for pattern in BEFORE_FORMATS:
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=zone)
        except ValueError:
            continue
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SelectionError(f"--before {text!r}: use 'YYYY-mm-dd HH:MM' (in TZ={zone.key})") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def contains_database(manifest: Manifest, database: str) -> bool:
    if manifest.kind in FULL_KINDS:
        return database in manifest.databases
    return manifest.kind == "database" and manifest.target == database


def contains_table(manifest: Manifest, database: str) -> bool:
    """A backup that may hold tables of ``database``: its database dump or a table selection."""
    return manifest.kind in ("database", "table") and manifest.target == database


def pick(manifests: list[Manifest], choice: Choice, wanted, description: str) -> Manifest:
    """The newest manifest satisfying ``wanted`` (and --before), or a SelectionError naming why."""
    candidates = [manifest for manifest in manifests if wanted(manifest)]
    if choice.before is not None:
        candidates = [manifest for manifest in candidates if manifest.started_at < choice.before]
    if not candidates:
        when = f" taken before {choice.before.isoformat(' ')}" if choice.before else ""
        raise SelectionError(f"no backup of {description}{when} has a manifest in the backup directory")
    return max(candidates, key=lambda manifest: manifest.started_at)


def future_dated(manifests: list[Manifest], wanted, now: datetime | None) -> list[Manifest]:
    """The candidates dated in the future, newest first (none when ``now`` is not given)."""
    if now is None:
        return []
    future = [manifest for manifest in manifests if wanted(manifest) and is_future(manifest.started_at, now)]
    return sorted(future, key=lambda manifest: manifest.started_at, reverse=True)


def select_backup(
    directory: Path, choice: Choice, wanted, description: str, manifests: list[Manifest] | None = None,
    signing_key: bytes | None = None,
) -> Selected:
    """Resolve --latest/--before/--from to one artifact with its manifest.

    ``manifests`` are the candidates (default: those in ``directory``); the path of a
    candidate that is only in S3 does not exist until it is downloaded.
    """
    if choice.path is not None:
        return from_path(choice.path, signing_key)
    if manifests is None:
        manifests = scan_manifests(directory, signing_key).manifests
    future = future_dated(manifests, wanted, choice.now)
    try:
        manifest = pick([m for m in manifests if m not in future], choice, wanted, description)
    except SelectionError:
        if not future:
            raise
        raise SelectionError(
            f"the only backups of {description} that match are dated in the future ({future[0].file} at "
            f"{describe_future(future[0].started_at, choice.now)}): taken while the clock was wrong, their "
            "time is unknown; check the clock, then restore one explicitly with --from PATH"
        ) from None
    return Selected(manifest, directory / manifest.file, tuple(future))


def from_path(path: Path, signing_key: bytes | None = None) -> Selected:
    """An artifact named on the command line; its manifest must be next to it (and, with
    MANIFEST_SIGNING_KEY, signed with it)."""
    manifest_file = manifest_path(path)
    if not manifest_file.exists():
        raise SelectionError(
            f"{path} has no manifest ({manifest_file.name}); only complete backups with a manifest are restored"
        )
    try:
        manifest = read_manifest(manifest_file)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SelectionError(f"cannot read {manifest_file}: {error}") from None
    problem = manifest.signature_problem(signing_key)
    if problem is not None:
        log.error("manifest_tampered", file=manifest_file.name, location="local", problem=problem)
        raise SelectionError(f"{manifest_file.name} is not trusted: {problem}; possible tampering, nothing "
                             "is restored from it")
    return Selected(manifest, path)
