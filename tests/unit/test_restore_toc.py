"""Reading pg_restore --list by entry type: partitions, their ATTACH entries and awkward names."""

from __future__ import annotations

from daemon.restore.toc import has_table_data, listed_tables, missing_tables, parse_listing

# As pg_restore 15 prints it for a partitioned table m with partition m1, a table in a schema
# named "DATA", a table whose name holds a newline (printed as a space), and their data.
LISTING = b""";
; Archive created at 2026-12-04 17:50:01 UTC
;     dbname: shop
;
; Selected TOC Entries:
;
216; 1259 16385 TABLE public m postgres
217; 1259 16388 TABLE public m1 postgres
3310; 0 0 TABLE ATTACH public m1 postgres
218; 1259 16391 TABLE DATA public x postgres
219; 1259 16394 TABLE public line break postgres
220; 1259 16397 MATERIALIZED VIEW public mv postgres
221; 1259 16400 SEQUENCE public s postgres
3312; 0 16388 TABLE DATA public m1 postgres
3313; 0 16391 TABLE DATA DATA public x postgres
"""


class TestListing:
    def test_table_definitions_only(self):
        """Partitions are tables; ATTACH and DATA entries are not, whatever their schema is called."""
        assert listed_tables(parse_listing(LISTING)) == [
            "public m postgres", "public m1 postgres", "DATA public x postgres", "public line break postgres",
        ]

    def test_comment_lines_are_not_entries(self):
        """Lines starting with ';' (the header and commented-out entries) are skipped."""
        assert all(not entry.text.startswith("Archive") for entry in parse_listing(LISTING))
        assert len(parse_listing(LISTING)) == 9

    def test_table_data(self):
        """An archive has a table's rows when it lists a TABLE DATA entry (catalogue 0)."""
        assert has_table_data(parse_listing(LISTING))
        assert not has_table_data(parse_listing(b"218; 1259 16391 TABLE DATA public x postgres\n"))


class TestMissingTables:
    def test_counted_not_collapsed(self):
        """Two tables printed alike need two tables on the server."""
        listed = ["public a b postgres", "public a b postgres"]
        assert missing_tables(listed, ["public a b postgres"]) == ["public a b postgres"]
        assert missing_tables(listed, ["public a b postgres"] * 2) == []

    def test_extra_tables_on_the_server_are_fine(self):
        """Only what the archive lists must be there."""
        assert missing_tables(["public m postgres"], ["public m postgres", "public other postgres"]) == []
