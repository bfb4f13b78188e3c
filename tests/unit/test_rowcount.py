"""Row counts from the COPY sections of plain dumps, fed in any chunking."""

from __future__ import annotations

import random

import pytest

from daemon.rowcount import COPY_END, RowCounter, copy_table_name, count_newlines, find_copy_end, parse_connect_line

DUMPALL = b'''--
-- PostgreSQL database cluster dump
--

\\restrict abc
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER;
\\unrestrict abc
\\connect template1
\\restrict def
\\unrestrict def
CREATE DATABASE authdb WITH TEMPLATE = template0;
\\connect authdb
\\restrict ghi
CREATE TABLE public.users (id integer, note text);
COPY public.users (id, note) FROM stdin;
1\tplain
2\t\\\\.
3\ta\\nb
4\t\\\\.\\\\.
\\.


COPY public.empty (id) FROM stdin;
\\.


COPY public."Odd Table ""quoted""" (k) FROM stdin;
x
\\.
COPY public."line
break" ("col
umn") FROM stdin;
y
z
\\.
\\unrestrict ghi
\\connect -reuse-previous=on "dbname='we\\'ird ""db"" \xc3\xbc'"
COPY public.t (a) FROM stdin;
COPY public.t (a) FROM stdin;
\\N
\\.
-- PostgreSQL database cluster dump complete
'''

EXPECTED = {
    "authdb": {"public.users": 4, "public.empty": 0, 'public."Odd Table ""quoted"""': 1,
               'public."line\nbreak"': 2},
    "we'ird \"db\" ü": {"public.t": 2},
}


def count(data: bytes, sizes) -> dict:
    counter = RowCounter()
    position = 0
    for size in sizes:
        counter.feed(data[position:position + size])
        position += size
    counter.feed(data[position:])
    return counter.counts


class TestRowCounter:
    def test_whole_stream(self):
        """A pg_dumpall stream fed at once gives each database's tables, empty ones as 0."""
        assert count(DUMPALL, []) == EXPECTED

    @pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 11, 64])
    def test_every_chunk_boundary(self, size):
        """Fixed-size chunks that split lines, the terminator and the COPY header give the same counts."""
        assert count(DUMPALL, [size] * (len(DUMPALL) // size + 1)) == EXPECTED

    def test_random_chunking(self):
        """Random chunk sizes give the same counts."""
        generator = random.Random(5)
        for _ in range(200):
            sizes = [generator.randint(1, 40) for _ in range(len(DUMPALL) // 10)]
            assert count(DUMPALL, sizes) == EXPECTED

    def test_escaped_backslash_dot_is_data(self):
        """A data line of backslash-backslash-dot (the text "\\." in a column) is a row, not the end."""
        data = b"COPY public.x (a) FROM stdin;\n\\\\.\n\\\\.\n\\.\n"
        counter = RowCounter("db")
        counter.feed(data)
        assert counter.counts == {"db": {"public.x": 2}}

    def test_single_database_dump_uses_the_given_name(self):
        """A pg_dump (no \\connect) counts under the database the counter was made for."""
        counter = RowCounter("apidb")
        for byte in range(0, 80, 3):
            counter.feed(b"SET x = 1;\nCOPY api.requests (id) FROM stdin;\n1\n2\n3\n\\.\n"[byte:byte + 3])
        assert counter.counts == {"apidb": {"api.requests": 3}}

    def test_long_rows_across_many_chunks(self):
        """A row longer than many chunks is counted once."""
        data = b"COPY public.big (a) FROM stdin;\n" + b"x" * 10_000 + b"\n" + b"y\n\\.\n"
        assert count(data, [97] * 110) == {"": {"public.big": 2}}


class TestDumpLines:
    def test_copy_table_name_keeps_quotes(self):
        """The table key is the name as pg_dump quoted it, usable in SQL as it is."""
        assert copy_table_name(b'COPY s."a b" (k, "v w") FROM stdin;') == 's."a b"'

    @pytest.mark.parametrize(
        ("line", "name"),
        [
            (b"\\connect authdb", "authdb"),
            (b'\\connect "MixedCase"', "MixedCase"),
            (b"\\connect -reuse-previous=on \"dbname='my db'\"", "my db"),
            (b"\\connect -reuse-previous=on \"dbname='it\\'s \"\"q\"\" \\\\x'\"", 'it\'s "q" \\x'),
        ],
    )
    def test_connect_lines(self, line, name):
        """Every form of pg_dumpall's \\connect line names the right database."""
        assert parse_connect_line(line) == name


class TestScanPrimitives:
    """The fast scans give exactly what the plain bytes methods give."""

    CASES = [
        b"",
        b"\\.\n",
        b"\n\\.\n",
        b"a\\.\nb\n\\.\n",  # a backslash-dot inside a line is data, not the end
        b"1\t\\N\t\\\\.\n2\t\\N\n\\.\n\n",
        b"x" * 50 + b"\n\\.",  # the end cut short: not found
        b"\\N\t" * 5000 + b"\n\\.\nCOPY",  # more backslashes than the probe limit
        b"row\n" * 100 + b"\\\\.\n\\.\n",
    ]

    @pytest.mark.parametrize("data", CASES)
    def test_find_copy_end_matches_find(self, data):
        for start in range(0, len(data) + 1, max(1, len(data) // 40)):
            assert find_copy_end(data, start) == data.find(COPY_END, start), start

    @pytest.mark.parametrize("data", CASES)
    def test_count_newlines_matches_count(self, data):
        for start in (0, 1, len(data) // 2):
            for end in (len(data), len(data) - 1, len(data) // 2 + 3):
                if start <= end:
                    assert count_newlines(data, start, end) == data.count(b"\n", start, end)

    def test_random_escaped_data(self):
        generator = random.Random(7)
        alphabet = [b"\\", b".", b"\n", b"a", b"\\N", b"\t"]
        for _ in range(300):
            data = b"".join(generator.choice(alphabet) for _ in range(generator.randint(0, 400)))
            start = generator.randint(0, len(data))
            assert find_copy_end(data, start) == data.find(COPY_END, start)
            assert count_newlines(data, start, len(data)) == data.count(b"\n", start)
