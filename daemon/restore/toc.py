"""An archive's table of contents as ``pg_restore --list`` prints it, read by entry type.

Each entry line is ``ID; CATALOG OID TYPE SCHEMA NAME OWNER``. The type can have several words
("TABLE DATA", "TABLE ATTACH", "MATERIALIZED VIEW") and so can a name, so the words alone do
not say where the type ends. The catalogue number does: a table's definition is an object of
``pg_class`` (oid 1259, fixed in every PostgreSQL release), while the entries that carry a
table's rows or attach a partition are not catalogue objects (0). pg_restore prints a newline
or carriage return inside a name as a space; the catalogue side of a comparison must do the same
(``LISTED_NAME_SQL``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

PG_CLASS = 1259
TABLE = "TABLE "
TABLE_DATA = "TABLE DATA "

# "schema name owner" of each table (partitions and partitioned tables included), written
# the way pg_restore --list writes it.
LISTED_TABLES_SQL = (
    "SELECT translate(n.nspname, E'\\n\\r', '  ') || ' ' || translate(c.relname, E'\\n\\r', '  ') || ' ' "
    "|| translate(pg_get_userbyid(c.relowner), E'\\n\\r', '  ') FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')"
)


@dataclass(frozen=True)
class TocEntry:
    catalog: int  # the oid of the catalogue the object is a row of; 0 for data and attach entries
    text: str  # "TYPE schema name owner"


def parse_listing(listing: bytes) -> list[TocEntry]:
    """The entries of a ``pg_restore --list`` output; comment lines are left out."""
    entries = []
    for line in listing.decode("utf-8", "replace").split("\n"):
        if line.startswith(";") or "; " not in line:
            continue
        fields = line.split("; ", 1)[1].split(" ", 2)
        if len(fields) == 3 and fields[0].isdigit():
            entries.append(TocEntry(int(fields[0]), fields[2]))
    return entries


def listed_tables(entries: Iterable[TocEntry]) -> list[str]:
    """'schema name owner' of each table definition: partitions count, their ATTACH entries do not."""
    return [entry.text[len(TABLE):] for entry in entries if entry.catalog == PG_CLASS and entry.text.startswith(TABLE)]


def has_table_data(entries: Iterable[TocEntry]) -> bool:
    return any(entry.catalog == 0 and entry.text.startswith(TABLE_DATA) for entry in entries)


def has_table_definition(entries: Iterable[TocEntry]) -> bool:
    """A table's definition: a partitioned table has one, though its rows are its partitions'."""
    return any(entry.catalog == PG_CLASS and entry.text.startswith(TABLE) for entry in entries)


def missing_tables(listed: Iterable[str], present: Iterable[str]) -> list[str]:
    """The listed tables the server does not have, counted: two tables that pg_restore prints alike
    (a newline in one name, a space in the other) need two tables on the server."""
    return sorted((Counter(listed) - Counter(present)).elements())
