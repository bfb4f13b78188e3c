"""What a backup left out (its manifest's ``excluded``, see backup/exclusions.py), in the words a
restore report uses: a restore never lets a table restored empty on purpose pass for a full one."""

from __future__ import annotations

from daemon.backup import exclusions
from daemon.manifest import Manifest


def databases_left_out(manifest: Manifest) -> list[str]:
    """Notes on the databases a full backup does not hold."""
    return [f"database {name!r} is not in this backup (EXCLUDE_DATABASES)"
            for name in manifest.excluded.get(exclusions.DATABASES, [])]


def left_out_of_database(manifest: Manifest, database: str) -> list[str]:
    """Notes on what ``database``'s own dump does not hold: rows of tables, schemas."""
    if manifest.target != database:
        return []
    notes = [f"rows of {database}.{table} were not backed up (EXCLUDE_TABLE_DATA): the table was restored empty"
             for table in manifest.excluded.get(exclusions.TABLE_DATA, [])]
    schemas = manifest.excluded.get(exclusions.ONLY_SCHEMAS, [])
    if schemas:
        notes.append(f"only schema{'s' if len(schemas) > 1 else ''} {', '.join(schemas)} of {database} "
                     f"{'were' if len(schemas) > 1 else 'was'} backed up (BACKUP_SCHEMAS); no other schema is in "
                     "this backup")
    return notes


def excluded_database_hint(manifest: Manifest, database: str) -> str:
    """Why a full backup lacks ``database``, when EXCLUDE_DATABASES is the reason; else empty."""
    if database in manifest.excluded.get(exclusions.DATABASES, []):
        return " (EXCLUDE_DATABASES left it out)"
    return ""


def rows_left_out(manifest: Manifest, table: str) -> bool:
    """Whether the backup holds ``table``'s definition but, on purpose, none of its rows."""
    left_out = manifest.excluded.get(exclusions.TABLE_DATA, [])
    return exclusions.table_pattern(table) in {exclusions.table_pattern(name) for name in left_out}
