"""Choosing the backup a restore uses: --latest, --before in TZ, --from with its manifest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.manifest import Manifest, write_manifest
from daemon.restore.selection import (
    Choice,
    SelectionError,
    contains_database,
    from_path,
    parse_before,
    pick,
    select_backup,
)

BERLIN = ZoneInfo("Europe/Berlin")


def manifest(kind: str, target: str, started: datetime, databases=()) -> Manifest:
    return Manifest(
        kind=kind, target=target, file=f"{kind}_{target}_{started:%Y%m%d_%H%M%S}.dump", size_bytes=1, sha256="0",
        started_at=started, finished_at=started + timedelta(seconds=30), server_version="15.20", format="custom",
        compression="pg_dump", databases=list(databases),
    )


def at(hour: int, minute: int = 0, zone=BERLIN) -> datetime:
    return datetime(2025, 10, 15, hour, minute, tzinfo=zone)


BACKUPS = [
    manifest("full", "all", at(3), ["authdb", "apidb"]),
    manifest("database", "authdb", at(4)),
    manifest("database", "apidb", at(13, 30)),
    manifest("database", "authdb", at(13, 59)),
    manifest("database", "authdb", at(14, 0)),
    manifest("pre_migration", "all", at(15), ["authdb"]),
]


def authdb(m: Manifest) -> bool:
    return contains_database(m, "authdb")


class TestParseBefore:
    def test_minutes_in_tz(self):
        """'2025-10-15 14:00' is that wall-clock time in TZ."""
        assert parse_before("2025-10-15 14:00", BERLIN) == at(14)

    def test_seconds_and_offsets(self):
        """Seconds are accepted, and an explicit offset wins over TZ."""
        assert parse_before("2025-10-15 14:00:30", BERLIN) == at(14) + timedelta(seconds=30)
        assert parse_before("2025-10-15T12:00:00+00:00", BERLIN) == at(14)

    def test_garbage_names_the_format(self):
        """An unreadable time is an error that shows the expected format and TZ."""
        with pytest.raises(SelectionError, match="YYYY-mm-dd HH:MM.*Europe/Berlin"):
            parse_before("yesterday", BERLIN)


class TestPick:
    def test_latest_of_a_database_includes_full_backups(self):
        """--latest picks the newest backup that contains the database, a full or pre-migration one included."""
        assert pick(BACKUPS, Choice(latest=True), authdb, "authdb").kind == "pre_migration"

    def test_before_is_strictly_before(self):
        """--before 14:00 picks the 13:59 dump, not the one started at 14:00 exactly."""
        chosen = pick(BACKUPS, Choice(before=at(14)), authdb, "authdb")
        assert chosen.started_at == at(13, 59)

    def test_before_compares_instants_across_zones(self):
        """A manifest written in UTC compares by instant with a --before given in TZ."""
        utc_backup = manifest("database", "authdb", datetime(2025, 10, 15, 11, 45, tzinfo=UTC))  # 13:45 Berlin
        chosen = pick([*BACKUPS[:2], utc_backup], Choice(before=parse_before("2025-10-15 13:50", BERLIN)), authdb, "a")
        assert chosen is utc_backup

    def test_other_databases_are_ignored(self):
        """A newer dump of another database is never chosen."""
        assert pick(BACKUPS, Choice(before=at(13, 45)), authdb, "authdb").started_at == at(4)

    def test_nothing_before(self):
        """No backup before the time is an error naming the time, never a newer backup."""
        with pytest.raises(SelectionError, match="before 2025-10-15 02:00"):
            pick(BACKUPS, Choice(before=at(2)), authdb, "database 'authdb'")


class TestFromDirectory:
    def test_select_reads_manifests(self, tmp_path: Path):
        """Selection from BACKUP_DIR uses the manifests there and returns the artifact's path."""
        for m in BACKUPS:
            write_manifest(tmp_path, m)
        selected = select_backup(tmp_path, Choice(before=at(14)), authdb, "authdb")
        assert selected.path == tmp_path / selected.manifest.file
        assert selected.manifest.started_at == at(13, 59)

    def test_from_needs_a_manifest(self, tmp_path: Path):
        """--from a file without a manifest is refused: only complete backups are restored."""
        (tmp_path / "stray.dump").write_bytes(b"PGDMP")
        with pytest.raises(SelectionError, match="has no manifest"):
            from_path(tmp_path / "stray.dump")
