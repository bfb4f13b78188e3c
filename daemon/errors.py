"""Every error the daemon raises on purpose derives from PgBackupError.

The CLI maps them to exit codes; anything else is a bug and gets a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class PgBackupError(Exception):
    """Base of all expected failures; the message is meant for the user."""

    exit_code = 1


class SettingsError(PgBackupError):
    """The environment does not describe a valid configuration."""

    exit_code = 2

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class CommandFailed(PgBackupError):
    """A dump or client tool exited non-zero or its output stream broke off."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr_tail: str, reason: str = ""):
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.reason = reason
        super().__init__(self._describe())

    def _describe(self) -> str:
        program = self.argv[0] if self.argv else "command"
        status = f"exit status {self.returncode}" if self.returncode is not None else "no exit status"
        text = f"{program} failed ({status})"
        if self.reason:
            text += f": {self.reason}"
        if self.stderr_tail:
            text += f"; stderr: {self.stderr_tail}"
        return text


class ConnectionFailed(PgBackupError):
    """The database server or its container cannot be reached."""


class ClientTooOld(PgBackupError):
    """The sidecar's client tools are older than the server (TCP mode)."""

    exit_code = 2


class BackupDirFull(PgBackupError):
    """BACKUP_DIR ran out of space (or quota) while an artifact or its manifest was written."""

    def __init__(self, directory: object, file_name: str, error: OSError):
        self.directory = directory
        self.file_name = file_name
        super().__init__(
            f"BACKUP_DIR {directory} is full ({error.strerror}): {file_name} was not kept; free space there "
            "or lower RETENTION_*_DAYS and run `pgbackup prune`"
        )


class LockBusy(PgBackupError):
    """Another run holds the backup lock and waiting was not allowed."""

    exit_code = 3


class Cancelled(PgBackupError):
    """The run was interrupted (daemon shutdown) and cleaned up after itself."""

    exit_code = 130
