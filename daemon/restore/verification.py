"""The check after a restore, before anything is swapped in: every table the archive lists (or
the manifest counts) is there, with the manifest's row count where it has one."""

from __future__ import annotations

from daemon.manifest import Manifest
from daemon.restore import toc
from daemon.restore.base import RestoreReport, VerificationFailed
from daemon.restore.target import TargetServer

COUNT_BATCH = 100

_TABLES_SQL = (
    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
)


def verify(
    server: TargetServer, manifest: Manifest, database: str, restored_as: str, report: RestoreReport,
    listed: list[str] | None,
) -> None:
    """Tables present (and their row counts where the manifest has them)."""
    if listed is not None:
        missing = toc.missing_tables(listed, server.query(toc.LISTED_TABLES_SQL, restored_as))
        if missing:
            raise VerificationFailed(f"tables missing after restoring {database!r}: {', '.join(missing[:10])}")
        report.tables_checked += len(listed)
    counts = manifest.row_counts.get(database)
    if counts is None:
        if listed is None:
            report.notes.append(f"the manifest has no row counts for {database!r}; only the restore's exit status "
                                "was checked")
        return
    present = set(tables_of(server, restored_as))
    missing = sorted(table for table in counts if table not in present)
    if missing:
        raise VerificationFailed(f"tables missing after restoring {database!r}: {', '.join(missing[:10])}")
    actual = count_rows(server, restored_as, list(counts))
    wrong = [f"{table}: {actual[table]} rows, manifest {counts[table]}"
             for table in counts if actual[table] != counts[table]]
    if wrong:
        raise VerificationFailed(f"row counts differ after restoring {database!r}: {'; '.join(wrong[:10])}")
    if listed is None:
        report.tables_checked += len(counts)
    report.rows_checked += len(counts)


def count_rows(server: TargetServer, database: str, tables: list[str]) -> dict[str, int]:
    """Rows per table (names quoted as in the manifest), counted in batches of one query each."""
    counts: dict[str, int] = {}
    for start in range(0, len(tables), COUNT_BATCH):
        batch = tables[start:start + COUNT_BATCH]
        # ONLY: a parent of inheritance children holds its own rows; the dump's COPY counted those alone.
        sql = "SELECT concat_ws(',', " + ", ".join(f"(SELECT count(*) FROM ONLY {table})" for table in batch) + ")"
        (row,) = server.query(sql, database)
        counts.update(zip(batch, map(int, row.strip().split(","))))
    return counts


def tables_of(server: TargetServer, database: str) -> list[str]:
    """'schema.table' (quoted where needed) of each table in ``database``, partitioned ones too."""
    return server.query(_TABLES_SQL, database)
