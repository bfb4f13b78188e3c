"""Unpacking a directory-format dump's tar: plain files and folders only, never outside the target."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from daemon.errors import PgBackupError
from daemon.restore.artifacts import extract_plain_files


def tar_of(tmp_path, members) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                archive.addfile(info)
            else:
                info.size = 5
                archive.addfile(info, io.BytesIO(b"hello"))
    path = tmp_path / "dump.dir.tar"
    path.write_bytes(buffer.getvalue())
    return path


class TestExtractPlainFiles:
    def test_directory_dump_is_unpacked(self, tmp_path):
        """A directory-format dump's folder and files come out as they went in."""
        target = tmp_path / "out"
        target.mkdir()
        extract_plain_files(tar_of(tmp_path, [("dump", "dir"), ("dump/toc.dat", "file")]), target)
        assert (target / "dump" / "toc.dat").read_bytes() == b"hello"

    @pytest.mark.parametrize("members", [[("../escape", "file")], [("/absolute", "file")],
                                         [("dump/link", "symlink")]])
    def test_paths_outside_and_links_are_refused(self, tmp_path, members):
        """Paths leaving the target, absolute paths and links are refused, and nothing is written outside."""
        target = tmp_path / "out"
        target.mkdir()
        with pytest.raises(PgBackupError):
            extract_plain_files(tar_of(tmp_path, members), target)
        assert not (tmp_path / "escape").exists()
