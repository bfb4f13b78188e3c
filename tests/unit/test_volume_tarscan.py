"""The streaming tar scanner that reads the volume root and PG_VERSION as a snapshot passes."""

from __future__ import annotations

import io
import tarfile

import pytest

from daemon.volumes.tarscan import TarFormatError, TarScanner, normalise


def build_tar(entries, tar_format=tarfile.GNU_FORMAT) -> bytes:
    """entries: (name, type, data, uid, gid, mode)."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tar_format) as tar:
        for name, kind, data, uid, gid, mode in entries:
            member = tarfile.TarInfo(name)
            member.type = kind
            member.uid, member.gid, member.mode, member.mtime = uid, gid, mode, 1_700_000_000
            if kind == tarfile.REGTYPE:
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
            else:
                tar.addfile(member)
    return archive.getvalue()


def scan(data: bytes, chunk: int) -> TarScanner:
    scanner = TarScanner()
    for start in range(0, len(data), chunk):
        scanner.feed(data[start:start + chunk])
    return scanner


PGDATA = [
    (".", tarfile.DIRTYPE, b"", 999, 999, 0o700),
    ("./PG_VERSION", tarfile.REGTYPE, b"15\n", 999, 999, 0o600),
    ("./base", tarfile.DIRTYPE, b"", 999, 999, 0o700),
    ("./base/1/PG_VERSION", tarfile.REGTYPE, b"15\n", 999, 999, 0o600),
    ("./base/1/1259", tarfile.REGTYPE, b"x" * 9000, 999, 999, 0o600),
]


class TestTarScanner:
    @pytest.mark.parametrize("chunk", [1, 7, 512, 4096, 1 << 20])
    def test_finds_root_and_pg_version_whatever_the_chunking(self, chunk):
        """Root attributes, PG_VERSION and the entry count come out the same for any chunk size."""
        scanner = scan(build_tar(PGDATA), chunk)
        assert scanner.entries == 5
        assert scanner.root is not None
        assert (scanner.root.uid, scanner.root.gid, scanner.root.mode, scanner.root.type) == (999, 999, 0o700, "dir")
        assert scanner.pg_version == "15" and scanner.pg_version_path == "PG_VERSION"
        assert scanner.ended

    def test_pg_version_one_directory_down(self):
        """PGDATA in a subdirectory of the volume (PGDATA=/var/lib/postgresql/data/pgdata) is found."""
        entries = [
            (".", tarfile.DIRTYPE, b"", 0, 0, 0o755),
            ("./pgdata", tarfile.DIRTYPE, b"", 999, 999, 0o700),
            ("./pgdata/PG_VERSION", tarfile.REGTYPE, b"16\n", 999, 999, 0o600),
        ]
        scanner = scan(build_tar(entries), 100)
        assert scanner.pg_version == "16" and scanner.pg_version_path == "pgdata/PG_VERSION"

    def test_deeper_pg_version_files_are_not_the_cluster_version(self):
        """base/1/PG_VERSION (a database's) alone does not count as the cluster's version."""
        entries = [PGDATA[0], PGDATA[2], PGDATA[3]]
        assert scan(build_tar(entries), 512).pg_version is None

    @pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
    def test_long_names_do_not_derail_the_scan(self, tar_format):
        """A GNU long-name or pax header is followed correctly to the next entries."""
        long_name = "./" + "d" * 150 + "/file"
        entries = [PGDATA[0], (long_name, tarfile.REGTYPE, b"abc", 1, 2, 0o644), PGDATA[1]]
        scanner = scan(build_tar(entries, tar_format), 333)
        assert scanner.entries == 3 and scanner.pg_version == "15" and scanner.ended

    def test_a_truncated_stream_has_not_ended(self):
        """A stream cut before the end-of-archive marker is reported as not ended."""
        data = build_tar(PGDATA)
        assert not scan(data[: len(data) // 2], 512).ended

    def test_garbage_is_refused(self):
        """Bytes that are not tar headers raise TarFormatError."""
        with pytest.raises(TarFormatError):
            scan(b"\x1f\x8b" + b"not a tar" * 100, 512)


class TestNormalise:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [(".", ""), ("./", ""), ("/", ""), ("./PG_VERSION", "PG_VERSION"), ("./base/1/", "base/1"), ("base", "base")],
    )
    def test_names(self, name, expected):
        """Docker's './'-prefixed names map to plain relative names, the root to ''."""
        assert normalise(name) == expected
