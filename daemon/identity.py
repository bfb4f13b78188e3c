"""Which install a backup belongs to.

Two installs (two hosts, or staging and production) pointed at one bucket and prefix must
never mix their backups: one overwriting the other's file of the same second, retention
deleting one install's copies by the other's dates, a restore picking the other cluster's
dump. So every install has an instance: ``INSTANCE_NAME`` when it is set, otherwise an id
generated once and kept in ``BACKUP_DIR/.pgbackup-instance-id``. Every manifest records it;
retention, the offsite backlog and restore choose only their own instance's backups (a
manifest without an instance predates the record and counts as the reader's own), and the S3
prefix belongs to the first instance that writes to it (``daemon/storage/s3_claim.py``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import PgBackupError
from daemon.manifest import Manifest
from daemon.settings import Settings

INSTANCE_ID_FILE = ".pgbackup-instance-id"
GENERATED_PREFIX = "pgbackup-"


class IdentityError(PgBackupError):
    """This install has no instance and cannot be given one."""

    exit_code = 2


@dataclass(frozen=True)
class Instance:
    """The name new manifests and the S3 claim carry, and the other names that are ours too."""

    name: str  # empty: no backup taken yet and no INSTANCE_NAME (see this_instance)
    aliases: frozenset[str] = frozenset()  # the generated id, once INSTANCE_NAME is set over it

    def owns(self, recorded: str) -> bool:
        """Whether a manifest's (or claim's) instance is this install's."""
        return recorded == "" or recorded == self.name or recorded in self.aliases


def this_instance(settings: Settings, *, create: bool = True) -> Instance:
    """INSTANCE_NAME (with the generated id as an alias, so earlier backups stay ours), or the
    generated id, created on first use. Readers that write nothing (list, dry runs, restore
    selection) pass ``create=False``: before its first backup an install has no id, and only
    manifests without an instance are its own."""
    generated = read_generated_id(settings.backup_dir)
    if settings.instance_name:
        return Instance(settings.instance_name, frozenset({generated}) if generated else frozenset())
    if generated is None and create:
        generated = create_generated_id(settings.backup_dir)
    return Instance(generated or "")


def read_generated_id(directory: Path) -> str | None:
    try:
        text = (directory / INSTANCE_ID_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise IdentityError(f"cannot read {directory / INSTANCE_ID_FILE}: {error.strerror}; "
                            "fix its permissions or set INSTANCE_NAME") from None
    if not text.startswith(GENERATED_PREFIX):
        raise IdentityError(f"{directory / INSTANCE_ID_FILE} does not hold an instance id ({GENERATED_PREFIX}…); "
                            "restore the file, or set INSTANCE_NAME")
    return text


def create_generated_id(directory: Path) -> str:
    """A new random id, written so that two processes creating it at once agree on one."""
    candidate = GENERATED_PREFIX + secrets.token_hex(6)
    final = directory / INSTANCE_ID_FILE
    temporary = directory / f".{INSTANCE_ID_FILE}.{os.getpid()}.tmp"
    try:
        temporary.write_text(candidate + "\n", encoding="utf-8")
        try:
            os.link(temporary, final)  # fails when another process was first: its id wins
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as error:
        raise IdentityError(f"cannot create {final}: {error.strerror}; make BACKUP_DIR writable or set "
                            "INSTANCE_NAME") from None
    return read_generated_id(directory) or candidate


def split_by_owner(manifests: Iterable[Manifest], instance: Instance) -> tuple[list[Manifest], list[Manifest]]:
    """(this install's manifests, other installs' manifests), each in the given order."""
    own: list[Manifest] = []
    foreign: list[Manifest] = []
    for manifest in manifests:
        (own if instance.owns(manifest.instance) else foreign).append(manifest)
    return own, foreign


def describe_instances(manifests: Iterable[Manifest]) -> str:
    """'production (3 backups), pgbackup-1a2b3c4d5e6f (1 backup)' for an error message."""
    counts: dict[str, int] = {}
    for manifest in manifests:
        counts[manifest.instance] = counts.get(manifest.instance, 0) + 1
    return ", ".join(f"{name} ({count} backup{'s' if count != 1 else ''})" for name, count in sorted(counts.items()))
