import errno
import json
import os
import stat
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.manifest import Manifest, newest_by_kind_and_target, scan_manifests, write_manifest
from daemon.storage import local
from daemon.storage.local import AtomicArtifact, leftover_partials, remove_leftovers, replace_file_atomically

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=ZoneInfo("UTC"))


def manifest(file: str, started: datetime, kind: str = "full", target: str = "all") -> Manifest:
    return Manifest(kind=kind, target=target, file=file, size_bytes=3, sha256="ab", started_at=started,
                    finished_at=started + timedelta(seconds=7), server_version="15.18", format="plain",
                    compression="gzip")


class TestAtomicArtifact:
    def test_committed_file_appears_with_owner_only_permissions(self, tmp_path):
        """After commit the file has its final name, its content, its hash, and mode 0600."""
        with AtomicArtifact(tmp_path, "a.sql.gz") as artifact:
            artifact.write(b"hello")
            artifact.commit()
        path = tmp_path / "a.sql.gz"
        assert path.read_bytes() == b"hello"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert artifact.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        assert artifact.size_bytes == 5 and leftover_partials(tmp_path) == []

    def test_failure_leaves_nothing(self, tmp_path):
        """An exception before commit removes the temporary file and creates no artifact."""
        with pytest.raises(RuntimeError):
            with AtomicArtifact(tmp_path, "a.sql.gz") as artifact:
                artifact.write(b"half a dump")
                assert leftover_partials(tmp_path)
                raise RuntimeError("dump died")
        assert list(tmp_path.iterdir()) == []

    def test_existing_backup_is_never_overwritten(self, tmp_path):
        """A name that already exists is refused and the old file is untouched."""
        (tmp_path / "a.sql.gz").write_bytes(b"old backup")
        with pytest.raises(FileExistsError):
            with AtomicArtifact(tmp_path, "a.sql.gz"):
                pass
        assert (tmp_path / "a.sql.gz").read_bytes() == b"old backup"


def short_writes(at_most: int, fail_on_call: int | None = None):
    """An os.write that writes at most ``at_most`` bytes a call, and raises ENOSPC on call ``fail_on_call``."""
    real_write = os.write
    calls = []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) == fail_on_call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data[:at_most]))

    return write, calls


class TestReplaceFileAtomically:
    def test_short_writes_still_write_everything(self, tmp_path, monkeypatch):
        """When the OS writes fewer bytes than asked, the rest is written too: the file is complete."""
        path = tmp_path / "a.sql.gz.manifest.json"
        path.write_bytes(b"old")
        write, calls = short_writes(at_most=7)
        monkeypatch.setattr(local.os, "write", write)
        replace_file_atomically(path, b"0123456789" * 5)
        monkeypatch.undo()
        assert path.read_bytes() == b"0123456789" * 5
        assert len(calls) > 1 and leftover_partials(tmp_path) == []

    def test_failed_write_keeps_the_old_file(self, tmp_path, monkeypatch):
        """A write error half-way leaves the old file as it was and no temporary file behind."""
        path = tmp_path / "a.sql.gz.manifest.json"
        path.write_bytes(b"the good old manifest")
        write, _ = short_writes(at_most=7, fail_on_call=3)
        monkeypatch.setattr(local.os, "write", write)
        with pytest.raises(OSError, match="No space left"):
            replace_file_atomically(path, b"0123456789" * 5)
        monkeypatch.undo()
        assert path.read_bytes() == b"the good old manifest"
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


class TestManifests:
    def test_round_trip(self, tmp_path):
        """A manifest written to disk reads back equal, with the documented fields."""
        original = manifest("backup_all_20261126_030000.sql.gz", T0)
        path = write_manifest(tmp_path, original)
        record = json.loads(path.read_text())
        for field in ("kind", "target", "file", "size_bytes", "sha256", "started_at", "finished_at",
                      "server_version", "format", "compression", "keep_forever"):
            assert field in record
        assert scan_manifests(tmp_path).manifests == [original]

    def test_scan_is_newest_first_and_reports_broken_files(self, tmp_path):
        """Scanning sorts by start time and lists unreadable manifests instead of failing."""
        write_manifest(tmp_path, manifest("old", T0))
        write_manifest(tmp_path, manifest("new", T0 + timedelta(days=1)))
        (tmp_path / "junk.manifest.json").write_text("{not json")
        scan = scan_manifests(tmp_path)
        assert [m.file for m in scan.manifests] == ["new", "old"]
        assert [path.name for path, _ in scan.unreadable] == ["junk.manifest.json"]

    def test_newest_per_kind_and_target(self):
        """The newest manifest of each kind and target is picked."""
        items = [manifest("a1", T0, "database", "a"), manifest("a2", T0 + timedelta(hours=1), "database", "a"),
                 manifest("b1", T0, "database", "b")]
        newest = newest_by_kind_and_target(items)
        assert {key: m.file for key, m in newest.items()} == {("database", "a"): "a2", ("database", "b"): "b1"}


class TestRemoveLeftovers:
    def test_partial_files_and_scratch_directories_go_everything_else_stays(self, tmp_path):
        """A killed run leaves a partial file and a directory dump's scratch directory, a killed restore
        its unpacked dump; those go, backups, other directories and a symlink with a scratch name stay."""
        (tmp_path / ".backup_all_20261126_030000.sql.gz.partial").write_bytes(b"half")
        (tmp_path / ".pgbackup-dir.Ab12Cd" / "dump").mkdir(parents=True)
        (tmp_path / ".pgbackup-dir.Ab12Cd" / "dump" / "toc.dat").write_bytes(b"toc")
        (tmp_path / ".pgbackup-restore-x1y2").mkdir()
        (tmp_path / "backup_all_20261125_030000.sql.gz").write_bytes(b"good")
        (tmp_path / "keep").mkdir()
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / ".pgbackup-dir.link").symlink_to(tmp_path / "elsewhere")
        removed = remove_leftovers(tmp_path)
        assert sorted(removed) == [".backup_all_20261126_030000.sql.gz.partial", ".pgbackup-dir.Ab12Cd",
                                   ".pgbackup-restore-x1y2"]
        assert sorted(path.name for path in tmp_path.iterdir()) == [
            ".pgbackup-dir.link", "backup_all_20261125_030000.sql.gz", "elsewhere", "keep"]

    def test_a_missing_directory_has_nothing_to_remove(self, tmp_path):
        assert remove_leftovers(tmp_path / "absent") == []
