"""The backup lock for CLI commands that must not run beside a backup (restores, volume transfers).

A scheduled backup that starts meanwhile waits for the command to finish, and the command
waits for a running backup: nothing is dumped half-restored, nothing restored mid-dump.
"""

from __future__ import annotations

import sys
import uuid
from contextlib import AbstractContextManager
from datetime import datetime

from daemon.lock import backup_lock
from daemon.logs import get_logger
from daemon.settings import Settings
from daemon.storage.local import ensure_backup_dir

log = get_logger(__name__)


def command_lock(settings: Settings, command: str, *, read_only_ok: bool = False) -> AbstractContextManager[None]:
    """Hold BACKUP_DIR's backup lock for ``command``, saying on stderr when it has to wait.

    ``read_only_ok``: the command only reads backups, so a read-only BACKUP_DIR is fine.
    """
    if not (read_only_ok and settings.backup_dir.is_dir()):
        ensure_backup_dir(settings.backup_dir)
    holder = {"run_id": uuid.uuid4().hex[:12], "kind": command, "since": datetime.now(settings.timezone).isoformat()}

    def waiting(other: dict) -> None:
        log.info("waiting_for_lock", held_by=other)
        print(f"pgbackup: waiting for {other.get('kind', 'another run')} to finish "
              f"(it holds {settings.backup_dir}/.pgbackup.lock since {other.get('since', '?')})", file=sys.stderr)

    return backup_lock(settings.backup_dir, holder, on_wait=waiting, read_only_ok=read_only_ok)
