"""Rows per table, counted from the COPY sections of a plain dump while it streams.

The counts describe exactly the snapshot the dump was taken from, so a restore can be
checked against them. Only plain dumps (pg_dumpall and ``pg_dump --format=plain``) are
counted: their COPY data is visible in the stream. Custom and directory archives
compress each table's data inside the archive; counting them would mean decompressing
and parsing the archive format a second time, which is not cheap, so their manifests
carry no row counts and a restore of them is checked for tables only.

The scanner works on bytes: outside COPY it looks at whole lines (the DDL is small),
inside COPY it counts newlines up to the terminator line ``\\.``. In COPY text format a
backslash in the data is always escaped, so a data line can never be exactly ``\\.``.
It runs on the thread that reads the dump, for every byte of it, so the two scans are
built from the fastest primitives of ``bytes`` (see count_newlines and find_copy_end).
"""

from __future__ import annotations

COPY_PREFIX = b"COPY "
COPY_SUFFIX = b" FROM stdin;"
CONNECT_PREFIX = b"\\connect "
TERMINATOR = b"\\.\n"
COPY_END = b"\n" + TERMINATOR
# find_copy_end looks at this many backslashes in one call before it hands over to a plain
# search: data full of escapes (\N for NULL, say) must not make it slower than that search.
MAX_BACKSLASH_PROBES = 256
# A COPY line names one table and its columns (at most 1,600 names of at most 63 bytes, quoted).
MAX_COPY_LINE = 1 << 20


def count_newlines(data: bytes, start: int, end: int) -> int:
    """``data.count(b"\\n", start, end)``; ``bytes.replace`` of one byte measured three times
    faster than ``bytes.count`` of it on dump data."""
    part = data if start == 0 and end == len(data) else data[start:end]
    return len(part) - len(part.replace(b"\n", b""))


def find_copy_end(data: bytes, start: int) -> int:
    """``data.find(COPY_END, start)``, faster on dump data (measured: by half): a search for the
    four bytes is slow on text made of short lines, while a backslash is rarer and found with
    a one-byte search; each one is checked for being a line of its own."""
    backslash = data.find(b"\\", start + 1)
    probes = 0
    while backslash != -1:
        if data[backslash - 1] == 0x0A and data.startswith(TERMINATOR, backslash):
            return backslash - 1
        probes += 1
        if probes >= MAX_BACKSLASH_PROBES:
            return data.find(COPY_END, backslash)
        backslash = data.find(b"\\", backslash + 1)
    return -1


class RowCounter:
    """Counts rows per (database, table) in a plain dump fed in arbitrary chunks."""

    def __init__(self, database: str | None = None):
        self.database = database  # None for pg_dumpall output: taken from its \connect lines
        self.counts: dict[str, dict[str, int]] = {}
        self._carry = b""
        self._table: str | None = None  # the table whose COPY data is streaming
        self._rows = 0
        self._mid_line = False  # inside COPY, in the middle of a data line
        self._open_copy = b""  # a COPY line whose quoted table name goes on on the next line

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk if self._carry else chunk
        self._carry = b""
        position = 0
        while position < len(data):
            if self._table is None:
                position = self._scan_statements(data, position)
            else:
                position = self._scan_copy_data(data, position)

    def _scan_statements(self, data: bytes, position: int) -> int:
        """Outside COPY, ``position`` is at a line start: handle whole lines."""
        while True:
            newline = data.find(b"\n", position)
            if newline == -1:
                self._carry = data[position:]
                return len(data)
            line = data[position:newline]
            position = newline + 1
            line = self._continued_copy(line)
            if line is None:
                continue
            if line.startswith(COPY_PREFIX) and line.endswith(COPY_SUFFIX):
                self._start_copy(line)
                return position
            if line.startswith(CONNECT_PREFIX):
                self.database = parse_connect_line(line)

    def _continued_copy(self, line: bytes) -> bytes | None:
        """A COPY line with an odd number of double quotes has a newline inside a quoted name
        (``COPY public."a<newline>b" (id) FROM stdin;``): it is joined with the lines that follow
        until its quotes close (None meanwhile). A line that starts another statement, or a
        statement longer than any COPY line can be, ends the wait: it was not a COPY after all."""
        if self._open_copy:
            if line.startswith((COPY_PREFIX, CONNECT_PREFIX)) or len(self._open_copy) > MAX_COPY_LINE:
                self._open_copy = b""
            else:
                line = self._open_copy + b"\n" + line
                self._open_copy = b""
        if line.startswith(COPY_PREFIX) and line.count(b'"') % 2:
            self._open_copy = line
            return None
        return line

    def _scan_copy_data(self, data: bytes, position: int) -> int:
        end = len(data)
        if self._mid_line:
            newline = data.find(b"\n", position)
            if newline == -1:
                return end
            self._rows += 1
            self._mid_line = False
            position = newline + 1
        if data.startswith(TERMINATOR, position):
            self._finish_copy()
            return position + len(TERMINATOR)
        if end - position < len(TERMINATOR) and TERMINATOR.startswith(data[position:]):
            self._carry = data[position:]  # maybe the start of the terminator: wait for more
            return end
        terminator = find_copy_end(data, position)
        if terminator != -1:
            self._rows += count_newlines(data, position, terminator) + 1
            self._finish_copy()
            return terminator + 1 + len(TERMINATOR)
        last_newline = data.rfind(b"\n", position)
        if last_newline != -1:
            self._rows += count_newlines(data, position, last_newline + 1)
            position = last_newline + 1
        tail = data[position:]
        if tail and len(tail) < len(TERMINATOR) and TERMINATOR.startswith(tail):
            self._carry = tail
        elif tail:
            self._mid_line = True
        return end

    def _start_copy(self, line: bytes) -> None:
        self._table = copy_table_name(line)
        self._rows = 0
        self._mid_line = False

    def _finish_copy(self) -> None:
        database = self.database if self.database is not None else ""
        tables = self.counts.setdefault(database, {})
        tables[self._table] = tables.get(self._table, 0) + self._rows
        self._table = None
        self._rows = 0


def copy_table_name(line: bytes) -> str:
    """The table of a COPY line, e.g. ``api.requests`` from ``COPY api.requests (id) FROM stdin;``.

    The name stays quoted as pg_dump wrote it, so it can be used in SQL as it is.
    """
    text = line[len(COPY_PREFIX):-len(COPY_SUFFIX)].decode("utf-8", "replace")
    quoted = False
    for index, character in enumerate(text):
        if character == '"':
            quoted = not quoted
        elif character == " " and not quoted:
            return text[:index]
    return text


def parse_connect_line(line: bytes) -> str:
    """The database a pg_dumpall ``\\connect`` line switches to.

    pg_dumpall writes ``\\connect name``, ``\\connect "Name"`` or, for any other name,
    ``\\connect -reuse-previous=on "dbname='it\\'s'"`` (a quoted connection string).
    """
    text = line[len(CONNECT_PREFIX):].decode("utf-8").rstrip("\r\n")
    reuse = text.startswith("-reuse-previous=on ")
    if reuse:
        text = text[len("-reuse-previous=on "):]
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        text = text[1:-1].replace('""', '"')
    if not reuse:
        return text
    if not text.startswith("dbname="):
        raise ValueError(f"unexpected \\connect line: {line[:200]!r}")
    return _conninfo_value(text[len("dbname="):])


def _conninfo_value(value: str) -> str:
    if not value.startswith("'"):
        return value
    result, escaped = [], False
    for character in value[1:]:
        if escaped:
            result.append(character)
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == "'":
            return "".join(result)
        else:
            result.append(character)
    raise ValueError("unterminated quoted value in a \\connect line")
