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


def member_with_size_elsewhere(name: str, data: bytes, size_form: str) -> bytes:
    """One regular-file entry whose header's octal size field does not hold the size, as Docker's
    archive API (Go's archive/tar) writes files of 8 GiB and more: ``pax`` puts 0 there and the
    size in a pax ``size`` record; ``base256`` puts it in GNU's base-256 form."""
    member = tarfile.TarInfo(name)
    member.uid, member.gid, member.mode, member.mtime = 999, 999, 0o600, 1_700_000_000
    if size_form == "pax":
        member.size = 0
        member.pax_headers = {"size": str(len(data))}
        headers = member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    else:
        member.size = len(data)
        header = bytearray(member.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
        header[124:136] = b"\x80" + len(data).to_bytes(11, "big")
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % sum(header[:512])
        headers = bytes(header)
    return headers + data + bytes(-len(data) % 512)


def tar_with_size_elsewhere(size_form: str) -> tuple[bytes, bytes]:
    """A tar (root, a 3000-byte file sized the other way, PG_VERSION, end marker) and that file's data."""
    big = bytes(range(256)) * 11 + b"tail"
    root = tarfile.TarInfo(".")
    root.type, root.uid, root.gid, root.mode = tarfile.DIRTYPE, 999, 999, 0o700
    head = root.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    tail = build_tar([PGDATA[1]], tarfile.PAX_FORMAT)
    return head + member_with_size_elsewhere("./base/16384/1259", big, size_form) + tail, big


class TestSizeOutsideTheOctalField:
    @pytest.mark.parametrize("size_form", ["pax", "base256"])
    @pytest.mark.parametrize("chunk", [1, 100, 512, 1 << 20])
    def test_the_real_size_is_honoured(self, size_form, chunk):
        """A size in a pax ``size`` record (octal field 0) or in base-256 is the entry's size: the
        scan passes over exactly its data and reads the entries after it."""
        data, _ = tar_with_size_elsewhere(size_form)
        scanner = scan(data, chunk)
        assert scanner.entries == 3 and scanner.pg_version == "15" and scanner.ended

    @pytest.mark.parametrize("size_form", ["pax", "base256"])
    def test_round_trip_through_python_tarfile(self, size_form):
        """The hand-built headers are what a real tar reader takes them for: the same entry, size and data."""
        data, big = tar_with_size_elsewhere(size_form)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.getmember("./base/16384/1259")
            assert member.size == len(big) and tar.extractfile(member).read() == big
            assert [m.name for m in tar.getmembers()] == [".", "./base/16384/1259", "./PG_VERSION"]

    def test_the_pax_size_applies_to_the_next_entry_only(self):
        """An entry after the one the pax header described has its own (octal) size again."""
        data, _ = tar_with_size_elsewhere("pax")
        scanner = scan(data, 512)
        assert scanner.pg_version == "15" and scanner.pg_version_path == "PG_VERSION"  # its own 3 bytes

    def test_a_malformed_pax_record_is_refused(self):
        """A pax record whose length does not fit is a format error, not a silent misreading."""
        member = tarfile.TarInfo("./x")
        member.pax_headers = {"comment": "y"}
        headers = bytearray(member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        record = headers.index(b"comment=")
        headers[record - 3:record - 1] = b"99"  # the record claims 99 bytes
        with pytest.raises(TarFormatError, match="pax"):
            scan(bytes(headers) + bytes(1024), 512)


class TestNormalise:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [(".", ""), ("./", ""), ("/", ""), ("./PG_VERSION", "PG_VERSION"), ("./base/1/", "base/1"), ("base", "base")],
    )
    def test_names(self, name, expected):
        """Docker's './'-prefixed names map to plain relative names, the root to ''."""
        assert normalise(name) == expected
