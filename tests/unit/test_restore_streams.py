"""The byte streams a restore feeds to psql: gunzip, existing roles, one database's section."""

from __future__ import annotations

import gzip

import pytest

from daemon.restore.streams import ArtifactDamaged, database_section, globals_section, gunzip, skip_existing_roles

DUMPALL = b"""\\restrict a
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER;
CREATE ROLE "User";
CREATE ROLE app;
\\unrestrict a
\\connect template1
\\restrict b
\\unrestrict b
CREATE DATABASE authdb;
\\connect authdb
\\restrict c
COPY public.t (a) FROM stdin;
-- PostgreSQL database dump complete
\\connect apidb
\\.
CREATE TABLE x (a int);
-- PostgreSQL database dump complete
\\unrestrict c
CREATE DATABASE apidb;
\\connect apidb
\\restrict d
CREATE TABLE y (a int);
\\unrestrict d
"""


def in_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


class TestSkipExistingRoles:
    @pytest.mark.parametrize("size", [1, 7, 4096])
    def test_only_the_bare_create_of_existing_roles(self, size):
        """CREATE ROLE of roles the server has is dropped (plain and quoted forms); all else streams as it was."""
        out = b"".join(skip_existing_roles(in_chunks(DUMPALL, size), ["postgres", "User"]))
        assert out == DUMPALL.replace(b"CREATE ROLE postgres;\n", b"").replace(b'CREATE ROLE "User";\n', b"")

    def test_nothing_after_the_first_connect_is_touched(self):
        """A matching line after the roles section (e.g. in data) is kept."""
        data = b"\\connect db\nCREATE ROLE postgres;\n"
        assert b"".join(skip_existing_roles([data], ["postgres"])) == data


class TestSections:
    @pytest.mark.parametrize("size", [1, 5, 4096])
    def test_database_section_ends_at_its_unrestrict(self, size):
        """authdb's section runs from after its \\connect to its \\unrestrict; COPY data is not interpreted."""
        out = b"".join(database_section(in_chunks(DUMPALL, size), "authdb"))
        assert out == (b"\\restrict c\nCOPY public.t (a) FROM stdin;\n-- PostgreSQL database dump complete\n"
                       b"\\connect apidb\n\\.\nCREATE TABLE x (a int);\n-- PostgreSQL database dump complete\n"
                       b"\\unrestrict c\n")

    def test_missing_database(self):
        """Asking for a database the full backup does not have is an error."""
        with pytest.raises(Exception, match="no section for database 'nope'"):
            list(database_section([DUMPALL], "nope"))

    def test_globals_stop_at_the_first_connect(self):
        """The globals are everything before the first \\connect."""
        assert b"".join(globals_section([DUMPALL])).endswith(b"\\unrestrict a\n")


class TestGunzip:
    def test_round_trip_in_small_chunks(self):
        """Concatenated gzip members fed byte by byte decompress to the original."""
        data = gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 10)
        assert b"".join(gunzip(in_chunks(data, 1))) == b"a" * 1000 + b"b" * 10

    def test_truncated_stream_is_an_error(self):
        """A gzip stream that stops early raises instead of ending quietly."""
        data = gzip.compress(bytes(range(256)) * 400)
        with pytest.raises(ArtifactDamaged, match="truncated"):
            b"".join(gunzip([data[:-20]]))
