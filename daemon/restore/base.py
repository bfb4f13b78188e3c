"""What every kind of restore shares: its errors and report, the databases it never replaces,
SQL quoting, and the guards that refuse a restore before anything is changed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from daemon.errors import PgBackupError
from daemon.manifest import Manifest

MAINTENANCE_DB = "postgres"
SYSTEM_DATABASES = ("postgres", "template0", "template1")

# Returns only when every step named may go ahead (confirm.confirm with --yes applied).
Confirm = Callable[[list[str]], None]


class RestoreFailed(PgBackupError):
    """The restore stopped; the message says what is left where."""


class VerificationFailed(RestoreFailed):
    """The restored data does not match the manifest."""


@dataclass
class RestoreReport:
    what: str
    source: str
    databases: list[str] = field(default_factory=list)
    tables_checked: int = 0
    rows_checked: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def merge_checks(self, other: RestoreReport) -> None:
        """Add what another report's checks counted and noted (one database's, of a full restore)."""
        self.tables_checked += other.tables_checked
        self.rows_checked += other.rows_checked
        self.notes.extend(other.notes)

    def summary(self) -> str:
        checked = f"{self.tables_checked} tables present"
        if self.rows_checked:
            checked += f", row counts of {self.rows_checked} tables match the manifest"
        text = f"restored {self.what} from {self.source} in {self.seconds:.1f} s ({checked})"
        return "\n".join([text, *(f"note: {note}" for note in self.notes)])


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def split_table(table: str) -> tuple[str, str]:
    """'schema.table' or 'table' (schema public); the names as they are, unquoted."""
    schema, dot, name = table.partition(".")
    return (schema, name) if dot and schema and name else ("public", table)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise RestoreFailed(message)


def require_backup_of(manifest: Manifest, database: str) -> None:
    """A database or table backup is restored as the database it was taken from (``--into`` puts it elsewhere)."""
    require(
        manifest.target == database,
        f"{manifest.file} is a backup of database {manifest.target!r}, not {database!r}; to restore it "
        f"in place of {database!r}, name the database it came from and add --into {database!r}",
    )
