"""The recovery window carried out by the retention sweep on real files (housekeeping/prune.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.commands.prune import format_report
from daemon.housekeeping.prune import locked_sweep, sweep
from daemon.manifest import Manifest, write_manifest
from daemon.monitoring.metrics import Metrics
from daemon.naming import base_backup_name, manifest_name
from daemon.settings import Settings
from daemon.wal.segments import DEFAULT_SEGMENT_SIZE, Segment, format_lsn

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 12, 20, 6, 0, tzinfo=UTC)


def make_base(directory, days_ago: int, start: int) -> Manifest:
    finished = NOW - timedelta(days=days_ago)
    name = base_backup_name(finished)
    (directory / name).write_bytes(b"tar")
    lsn = start * DEFAULT_SEGMENT_SIZE + 0x28
    manifest = Manifest(kind="base", target="cluster", file=name, size_bytes=3, sha256="ab",
                        started_at=finished - timedelta(minutes=1), finished_at=finished, server_version="15.8",
                        format="tar", compression="gzip",
                        details={"start_lsn": format_lsn(lsn), "stop_lsn": format_lsn(lsn + 0x100), "timeline": 1})
    write_manifest(directory, manifest)
    return manifest


def make_wal(directory, numbers, *, record: bool = True) -> list[str]:
    archive = directory / "wal"
    (archive / ".spool").mkdir(parents=True, exist_ok=True)
    names = [Segment(1, number).name for number in numbers]
    for name in names:
        (archive / f"{name}.gz").write_bytes(b"wal")
        if record:
            (archive / f"{name}.json").write_text("{}")
    return names


class TestWindowSweep:
    def test_bases_and_wal_outside_the_window_go_and_the_rest_stays(self, tmp_path):
        """A 20-day-old base is replaced by the 10-day-old one that covers the window start; WAL before
        that base's start goes, an orphan .gz included; a day window of 1 does not touch bases."""
        old, anchor, newest = make_base(tmp_path, 20, 10), make_base(tmp_path, 10, 20), make_base(tmp_path, 1, 30)
        gone = make_wal(tmp_path, range(5, 19)) + make_wal(tmp_path, [19], record=False)
        kept = make_wal(tmp_path, range(20, 33))
        settings = Settings(postgres_container="pg", backup_dir=tmp_path, pitr_window_days=7, retention_full_days=1, _env_file=None)

        preview = sweep(settings, Metrics(), NOW, dry_run=True)
        assert {item.file for item in preview.deleted} == {old.file, *(f"wal/{name}" for name in gone)}
        assert "WOULD DELETE" in format_report(preview, True) and (tmp_path / old.file).exists()

        metrics = Metrics()
        report = locked_sweep(settings, metrics, NOW)
        assert report.errors == [] and report.refused == []
        assert not (tmp_path / old.file).exists() and not (tmp_path / manifest_name(old.file)).exists()
        assert all((tmp_path / m.file).exists() for m in (anchor, newest))
        left = {path.name for path in (tmp_path / "wal").iterdir()}
        assert left == {".spool", ".archive.lock", *(f"{n}.gz" for n in kept), *(f"{n}.json" for n in kept)}
        deleted = metrics.registry.get_sample_value
        assert deleted("pgbackup_retention_deleted_total", {"kind": "base", "location": "local"}) == 1
        assert deleted("pgbackup_retention_deleted_total", {"kind": "wal", "location": "local"}) == len(gone)

    def test_without_a_usable_base_nothing_goes_and_the_sweep_says_why(self, tmp_path):
        """The only base's artifact is gone: the WAL stays, the refusal is reported and counted."""
        base = make_base(tmp_path, 30, 10)
        (tmp_path / base.file).unlink()
        names = make_wal(tmp_path, range(1, 12))
        metrics = Metrics()
        report = locked_sweep(Settings(postgres_container="pg", backup_dir=tmp_path, _env_file=None), metrics, NOW)
        assert report.deleted == [] and any("no usable base backup" in text for text in report.refused)
        assert report.unusable and (tmp_path / manifest_name(base.file)).exists()
        assert all((tmp_path / "wal" / f"{name}.json").exists() for name in names)
        assert metrics.registry.get_sample_value("pgbackup_retention_refused_total",
                                                 {"kind": "base", "location": "local"}) == 1
