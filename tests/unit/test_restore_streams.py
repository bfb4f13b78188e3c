"""The byte streams a restore feeds to psql: gunzip, existing roles, one database's section."""

from __future__ import annotations

import gzip

import pytest

from daemon.restore.streams import (
    ArtifactDamaged,
    DatabaseRename,
    create_database_options,
    database_section,
    database_statements,
    dump_pieces,
    globals_section,
    gunzip,
    is_database_entry,
    keep_password_of,
    skip_existing_roles,
    skip_existing_tablespaces,
    split_at_create_database,
    tablespace_locations,
)

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


class TestSkipExistingTablespaces:
    GLOBALS = (b"CREATE ROLE app;\n"
               b"CREATE TABLESPACE fastspace OWNER postgres LOCATION '/ssd';\n"
               b'CREATE TABLESPACE "Odd Space" OWNER app LOCATION \'/odd\';\n'
               b"COMMENT ON TABLESPACE fastspace IS 'ssd';\n"
               b"CREATE TABLESPACE other OWNER postgres LOCATION '/other';\n"
               b"\\connect template1\n"
               b"CREATE TABLESPACE fastspace OWNER postgres LOCATION '/in-data';\n")

    @pytest.mark.parametrize("size", [1, 4096])
    def test_only_the_create_of_existing_ones_before_the_first_connect(self, size):
        """CREATE TABLESPACE of tablespaces the server has goes (plain and quoted names), each named once;
        the rest of their statements, other tablespaces and everything after the first \\connect stay."""
        skipped = []
        out = b"".join(skip_existing_tablespaces(in_chunks(self.GLOBALS, size), ["fastspace", "Odd Space"],
                                                 on_skipped=skipped.append))
        assert out == (b"CREATE ROLE app;\n"
                       b"COMMENT ON TABLESPACE fastspace IS 'ssd';\n"
                       b"CREATE TABLESPACE other OWNER postgres LOCATION '/other';\n"
                       b"\\connect template1\n"
                       b"CREATE TABLESPACE fastspace OWNER postgres LOCATION '/in-data';\n")
        assert skipped == ["fastspace", "Odd Space"]

    def test_locations_of_the_globals(self):
        """The directories of the backup's tablespaces, quotes undone; a look-alike after the first connect is not one."""
        data = self.GLOBALS.replace(b"'/odd'", b"'/srv/o''dd ts'")
        assert tablespace_locations(in_chunks(data, 5)) == ["/ssd", "/srv/o'dd ts", "/other"]

    def test_a_server_without_tablespaces_changes_nothing(self):
        assert b"".join(skip_existing_tablespaces([self.GLOBALS], [])) == self.GLOBALS


ROLES = b'''CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a+b/c=:d+e/f=';
ALTER ROLE postgres SET work_mem TO '64MB';
CREATE ROLE "Odd ""Admin""";
ALTER ROLE "Odd ""Admin""" WITH LOGIN PASSWORD 'md5abc' VALID UNTIL 'infinity';
CREATE ROLE postgres_ro;
ALTER ROLE postgres_ro WITH LOGIN PASSWORD 'md5def';
\\connect authdb
ALTER ROLE postgres WITH LOGIN PASSWORD 'in a later section';
'''


class TestKeepPasswordOf:
    @pytest.mark.parametrize("size", [1, 9, 4096])
    def test_only_that_roles_password_clause_is_dropped(self, size):
        """The connecting role's ALTER ROLE ... WITH keeps every attribute but its PASSWORD; other roles,
        other statements and everything after the first \\connect stream as they were."""
        kept = []
        out = b"".join(keep_password_of(in_chunks(ROLES, size), "postgres", on_kept=lambda: kept.append(1)))
        assert out == ROLES.replace(
            b" PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a+b/c=:d+e/f=';", b";")
        assert kept == [1]

    def test_quoted_role_names(self):
        """A role whose name pg_dumpall quotes is matched in its quoted form, VALID UNTIL stays."""
        out = b"".join(keep_password_of([ROLES], 'Odd "Admin"'))
        assert b'ALTER ROLE "Odd ""Admin""" WITH LOGIN VALID UNTIL \'infinity\';\n' in out
        assert out.count(b"PASSWORD") == ROLES.count(b"PASSWORD") - 1

    def test_a_role_without_password_is_left_alone(self):
        """Nothing to drop, nothing reported."""
        data = b"ALTER ROLE postgres WITH SUPERUSER LOGIN;\n\\connect x\n"
        kept = []
        assert b"".join(keep_password_of([data], "postgres", on_kept=lambda: kept.append(1))) == data
        assert kept == []


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


COPY_DUMP = (b"CREATE TABLE t (a text);\nCOPY public.t (a) FROM stdin;\nrow one\n\\\\.not the end\n"
             b"CREATE DATABASE x;\n\\.\nSELECT 1;\nCOPY public.u (a) FROM stdin;\n\\.\n-- end\n")


class TestDumpPieces:
    @pytest.mark.parametrize("size", [1, 2, 3, 7, 4096])
    def test_statements_are_lines_and_copy_data_is_data_up_to_its_terminator(self, size):
        """Statement lines come one by one; COPY rows (escaped backslashes and statement-like rows
        included) and the terminator line are data; put together, the pieces are the input."""
        pieces = list(dump_pieces(in_chunks(COPY_DUMP, size)))
        assert b"".join(piece for piece, _ in pieces) == COPY_DUMP
        statements = [piece for piece, is_data in pieces if not is_data]
        assert statements == [b"CREATE TABLE t (a text);\n", b"COPY public.t (a) FROM stdin;\n", b"SELECT 1;\n",
                              b"COPY public.u (a) FROM stdin;\n", b"-- end\n"]
        data = b"".join(piece for piece, is_data in pieces if is_data)
        assert data == b"row one\n\\\\.not the end\nCREATE DATABASE x;\n\\.\n\\.\n"

    def test_copy_data_comes_in_blocks(self):
        """A chunk of many rows is one piece, not one piece per row."""
        rows = b"".join(b"%d\n" % i for i in range(10000))
        pieces = list(dump_pieces([b"COPY t (a) FROM stdin;\n" + rows + b"\\.\n"]))
        assert pieces == [(b"COPY t (a) FROM stdin;\n", False), (rows + b"\\.\n", True)]

    def test_an_unfinished_last_line_is_kept(self):
        """A dump without a final newline still ends with its last bytes."""
        assert list(dump_pieces([b"SELECT 1;\nSELECT 2;"])) == [(b"SELECT 1;\n", False), (b"SELECT 2;", False)]


# The shape of PostgreSQL 15's pg_dumpall around one database that has properties: its
# CREATE DATABASE and owner before the \connect, then its comment (two lines) and settings,
# a reconnect to the same database, tables, data and its privileges, each entry under its
# "-- Name: ...; Type: ..." header. COPY data and function bodies that look like statements
# about the database, in this database's section and in the one before it.
PROPERTIES = b"""\\connect template1
COPY public.notes (body) FROM stdin;
CREATE DATABASE admindb WITH TEMPLATE = template0 ENCODING = 'SQL_ASCII';
ALTER DATABASE admindb OWNER TO mallory;
\\.
--
-- Name: fix_other(); Type: FUNCTION; Schema: public; Owner: postgres
--

CREATE FUNCTION public.fix_other() RETURNS void
    LANGUAGE sql
    AS $$
ALTER DATABASE admindb OWNER TO mallory;
$$;
\\restrict k1
--
-- Name: admindb; Type: DATABASE; Schema: -; Owner: admin_owner
--

CREATE DATABASE admindb WITH TEMPLATE = template0 ENCODING = 'LATIN1' LOCALE_PROVIDER = libc LOCALE = 'C';


ALTER DATABASE admindb OWNER TO admin_owner;

\\unrestrict k1
\\connect admindb
\\restrict k1
SET statement_timeout = 0;
--
-- Name: DATABASE admindb; Type: COMMENT; Schema: -; Owner: admin_owner
--

COMMENT ON DATABASE admindb IS 'admin
GRANT data';

--
-- Name: admindb; Type: DATABASE PROPERTIES; Schema: -; Owner: admin_owner
--

ALTER DATABASE admindb CONNECTION LIMIT = 50;
ALTER DATABASE admindb SET work_mem TO '8MB';
ALTER ROLE app_x IN DATABASE admindb SET search_path TO 'public';

\\unrestrict k1

\\connect admindb
\\restrict k1
SET statement_timeout = 0;
--
-- Name: retune(); Type: FUNCTION; Schema: public; Owner: postgres
--

CREATE FUNCTION public.retune() RETURNS void
    LANGUAGE sql
    AS $$
ALTER DATABASE admindb SET work_mem TO '16MB';
GRANT CONNECT ON DATABASE admindb TO admindb;
$$;
CREATE TABLE public.t (a text);
--
-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.t (a) FROM stdin;
ALTER DATABASE admindb SET work_mem TO '1MB';
\\.
--
-- Name: DATABASE admindb; Type: ACL; Schema: -; Owner: admin_owner
--

GRANT CONNECT ON DATABASE admindb TO admindb;
-- PostgreSQL database dump complete
\\unrestrict k1

--
-- Database "postgres" dump
--
\\connect postgres
CREATE TABLE other (a int);
"""


class TestDatabaseWithProperties:
    @pytest.mark.parametrize("size", [1, 13, 4096])
    @pytest.mark.parametrize(("database", "options"), [
        ("admindb", b"WITH TEMPLATE = template0 ENCODING = 'LATIN1' LOCALE_PROVIDER = libc LOCALE = 'C';"),
        ("template1", None),
    ])
    def test_one_read_gives_the_create_options_and_the_same_section(self, size, database, options):
        """split_at_create_database finds the options past COPY data that looks like a CREATE DATABASE,
        and the section cut from the rest of that one read is the one cut from the whole dump."""
        rename = DatabaseRename(database, "pgbackup_restore_1")
        found, rest = split_at_create_database(in_chunks(PROPERTIES, size), database)
        assert found == options
        whole = b"".join(database_section(in_chunks(PROPERTIES, size), database, rename))
        assert b"".join(database_section(rest, database, rename)) == whole and whole

    @pytest.mark.parametrize("size", [1, 13, 4096])
    def test_section_goes_on_after_a_reconnect_and_names_the_staging_database(self, size):
        """The reconnect to the same database is left out (psql stays in the staging database), the
        section ends after its last \\unrestrict, and every statement about the database itself, the
        owner set before the \\connect included, names the staging database; COPY data and function
        bodies stay as they were, in this section and in the one before it."""
        rename = DatabaseRename("admindb", "pgbackup_restore_1")
        out = b"".join(database_section(in_chunks(PROPERTIES, size), "admindb", rename))
        assert out == b"""ALTER DATABASE "pgbackup_restore_1" OWNER TO admin_owner;
\\restrict k1
SET statement_timeout = 0;
--
-- Name: DATABASE admindb; Type: COMMENT; Schema: -; Owner: admin_owner
--

COMMENT ON DATABASE "pgbackup_restore_1" IS 'admin
GRANT data';

--
-- Name: admindb; Type: DATABASE PROPERTIES; Schema: -; Owner: admin_owner
--

ALTER DATABASE "pgbackup_restore_1" CONNECTION LIMIT = 50;
ALTER DATABASE "pgbackup_restore_1" SET work_mem TO '8MB';
ALTER ROLE app_x IN DATABASE "pgbackup_restore_1" SET search_path TO 'public';

\\unrestrict k1
\\restrict k1
SET statement_timeout = 0;
--
-- Name: retune(); Type: FUNCTION; Schema: public; Owner: postgres
--

CREATE FUNCTION public.retune() RETURNS void
    LANGUAGE sql
    AS $$
ALTER DATABASE admindb SET work_mem TO '16MB';
GRANT CONNECT ON DATABASE admindb TO admindb;
$$;
CREATE TABLE public.t (a text);
--
-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.t (a) FROM stdin;
ALTER DATABASE admindb SET work_mem TO '1MB';
\\.
--
-- Name: DATABASE admindb; Type: ACL; Schema: -; Owner: admin_owner
--

GRANT CONNECT ON DATABASE "pgbackup_restore_1" TO admindb;
-- PostgreSQL database dump complete
\\unrestrict k1
"""

    @pytest.mark.parametrize("size", [1, 4096])
    def test_database_statements_are_whole_entries_renamed(self, size):
        """What `pg_restore --create` sets on the database: the statements of its own entries, renamed,
        a two-line comment whole; not CREATE DATABASE, psql's meta-commands, function bodies or COPY data."""
        rename = DatabaseRename("admindb", "pgbackup_restore_1")
        script = b"".join(database_statements(in_chunks(PROPERTIES, size), "admindb", rename))
        sql = [line for line in script.decode().splitlines() if line.strip() and not line.startswith("--")]
        assert sql == [
            'ALTER DATABASE "pgbackup_restore_1" OWNER TO admin_owner;',
            'COMMENT ON DATABASE "pgbackup_restore_1" IS \'admin',
            "GRANT data';",
            'ALTER DATABASE "pgbackup_restore_1" CONNECTION LIMIT = 50;',
            'ALTER DATABASE "pgbackup_restore_1" SET work_mem TO \'8MB\';',
            'ALTER ROLE app_x IN DATABASE "pgbackup_restore_1" SET search_path TO \'public\';',
            'GRANT CONNECT ON DATABASE "pgbackup_restore_1" TO admindb;',
        ]

    @pytest.mark.parametrize(("header", "expected"), [
        (b"-- Name: admindb; Type: DATABASE; Schema: -; Owner: a", True),
        (b"-- Name: admindb; Type: DATABASE PROPERTIES; Schema: -; Owner: a", True),
        (b'-- Name: DATABASE "odd; Type: x"; Type: COMMENT; Schema: -; Owner: a', True),
        (b"-- Name: DATABASE admindb; Type: ACL; Schema: -; Owner: a", True),
        (b"-- Name: EXTENSION plpgsql; Type: COMMENT; Schema: -; Owner: ", False),
        (b"-- Name: retune(); Type: FUNCTION; Schema: public; Owner: postgres", False),
        (b"-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: postgres", False),
        (b"-- PostgreSQL database dump complete", None),
        (b'-- Database "admindb" dump', None),
    ])
    def test_entry_headers(self, header, expected):
        """Which of pg_dump's entry headers start an entry about the database itself (None: not a header)."""
        assert is_database_entry(header) is expected

    @pytest.mark.parametrize("size", [1, 4096])
    def test_reconnect_with_an_encoding_line_for_a_quoted_name(self, size):
        """For a name that needs quoting pg_dump writes \\encoding before each \\connect: the
        reconnect to the same database still does not end the section."""
        dump = b"""\\restrict k1
CREATE DATABASE "my-db" WITH TEMPLATE = template0;
\\unrestrict k1
\\encoding SQL_ASCII
\\connect -reuse-previous=on "dbname='my-db'"
\\restrict k1
ALTER DATABASE "my-db" SET work_mem TO '8MB';
\\unrestrict k1
\\encoding SQL_ASCII
\\connect -reuse-previous=on "dbname='my-db'"
\\restrict k1
SET client_encoding = 'UTF8';
CREATE TABLE public.t (a text);
-- PostgreSQL database dump complete
\\unrestrict k1
\\encoding SQL_ASCII
\\connect -reuse-previous=on "dbname='other'"
CREATE TABLE public.other (a text);
"""
        out = b"".join(database_section(in_chunks(dump, size), "my-db"))
        assert b"CREATE TABLE public.t (a text);" in out and b"public.other" not in out
        assert out.endswith(b"-- PostgreSQL database dump complete\n\\unrestrict k1\n")

    def test_without_rename_the_section_is_as_written(self):
        """Without a rename only the reconnect is left out."""
        out = b"".join(database_section([PROPERTIES], "admindb"))
        assert b"COMMENT ON DATABASE admindb IS" in out and b"\\connect" not in out
        assert out.endswith(b"-- PostgreSQL database dump complete\n\\unrestrict k1\n")

    def test_older_dumps_without_restrict_lines(self):
        """pg_dump before \\restrict: the same-database reconnect is skipped, the section ends at
        "dump complete"."""
        plain = b"\n".join(line for line in PROPERTIES.split(b"\n") if not line.startswith((b"\\restrict", b"\\unrestrict")))
        out = b"".join(database_section([plain], "admindb"))
        assert out.startswith(b"SET statement_timeout") and out.endswith(b"TO admindb;\n")
        assert b"\\connect" not in out and b"CREATE TABLE other" not in out

    @pytest.mark.parametrize("size", [1, 4096])
    def test_create_options_come_from_the_statement_not_from_copy_data(self, size):
        """The options of the database's CREATE DATABASE; a look-alike line in COPY data is ignored."""
        assert create_database_options(in_chunks(PROPERTIES, size), "admindb") == (
            b"WITH TEMPLATE = template0 ENCODING = 'LATIN1' LOCALE_PROVIDER = libc LOCALE = 'C';")

    def test_no_create_statement(self):
        """A dump taken without --create has none; reading stops at the database's \\connect."""
        assert create_database_options([b"\\connect admindb\nCREATE DATABASE admindb WITH X;\n"], "admindb") is None

    def test_quoted_names(self):
        """Names pg_dump quotes are matched in their quoted form, and only right after DATABASE."""
        rename = DatabaseRename('Odd "DB"', "new")
        line = b'GRANT CONNECT ON DATABASE "Odd ""DB""" TO "Odd ""DB""";\n'
        assert rename.rewrite(line) == b'GRANT CONNECT ON DATABASE "new" TO "Odd ""DB""";\n'
        assert rename.rewrite(b"CREATE TABLE t (a int);\n") == b"CREATE TABLE t (a int);\n"


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
