"""The entry point of every restore: ``Restorer`` takes the options once and has one method per
restore kind (whole cluster, one database, one table), each carried out by its own module.

Every restore stops at the first SQL error (psql ``ON_ERROR_STOP=1``, ``pg_restore
--exit-on-error``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from daemon.encryption import Decryption
from daemon.restore.artifacts import ArtifactReader
from daemon.restore.base import RestoreReport
from daemon.restore.confirm import confirm
from daemon.restore.database import restore_database
from daemon.restore.full import restore_full, restore_globals, tablespace_locations_of
from daemon.restore.selection import Selected
from daemon.restore.table import restore_table
from daemon.restore.target import TargetServer
from daemon.sources.postgres import PostgresServer


@dataclass
class Restorer:
    server: PostgresServer
    jobs: int = 2
    yes: bool = False
    progress_stream: TextIO = field(default_factory=lambda: sys.stderr)
    progress_interval: float = 30.0
    # Where directory archives are unpacked for a local pg_restore (BACKUP_DIR, which has room
    # for them); the system's temporary directory when it is read-only.
    temp_root: Path | None = None
    confirm: Callable[[list[str], bool], None] = confirm
    decryption: Decryption = field(default_factory=lambda: Decryption(None))  # ENCRYPT_IDENTITY_FILE

    def full(self, selected: Selected, *, force: bool = False) -> RestoreReport:
        """A pg_dumpall backup into a server without user databases (or with, given --force)."""
        return restore_full(self._target(), self._artifacts(), self._confirmed, selected, force=force,
                            jobs=self.jobs, messages=self.progress_stream)

    def globals_only(self, selected: Selected) -> None:
        """Only the roles and tablespaces of a full backup (for database dumps that refer to them)."""
        restore_globals(self._target(), self._artifacts(), selected)

    def tablespace_locations(self, selected: Selected) -> list[str]:
        """The directories a full backup's tablespaces were in (read from its start only)."""
        return tablespace_locations_of(self._artifacts(), selected)

    def database(self, selected: Selected, database: str, into: str | None = None) -> RestoreReport:
        """One database (from its own dump or from a full backup) into ``into`` or itself."""
        return restore_database(self._target(), self._artifacts(), self._confirmed, selected, database, into,
                                jobs=self.jobs, messages=self.progress_stream)

    def table(self, selected: Selected, database: str, table: str, into: str | None = None) -> RestoreReport:
        """One table: its rows replaced in ``database``, or definition and rows into ``into``."""
        return restore_table(self._target(), self._artifacts(), self._confirmed, selected, database, table, into)

    def _target(self) -> TargetServer:
        return TargetServer(self.server)

    def _artifacts(self) -> ArtifactReader:
        return ArtifactReader(self.server, self.progress_stream, self.progress_interval, self.temp_root,
                              self.decryption)

    def _confirmed(self, steps: list[str]) -> None:
        self.confirm(steps, self.yes)
