"""Byte streams a restore feeds to the server: the artifact read in chunks (checksummed),
gunzipped, and for pg_dumpall output either made safe for an existing role or cut down to
one database's section. All of it works chunk by chunk, never on a whole dump."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from isal import isal_zlib

from daemon.errors import PgBackupError
from daemon.rowcount import CONNECT_PREFIX, COPY_PREFIX, COPY_SUFFIX, TERMINATOR, find_copy_end, parse_connect_line

READ_SIZE = 1 << 20
GZIP_WBITS = 31


class ArtifactDamaged(PgBackupError):
    """The artifact is not what its manifest describes, or is not complete."""


def read_chunks(path: Path, on_read: Callable[[int], None] = lambda count: None) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while chunk := source.read(READ_SIZE):
            on_read(len(chunk))
            yield chunk


def check_sha256(path: Path, expected: str, size: int | None = None) -> None:
    """Compare the whole file with its manifest before anything is restored from it."""
    digest, total = hashlib.sha256(), 0
    for chunk in read_chunks(path):
        digest.update(chunk)
        total += len(chunk)
    if size is not None and total != size:
        raise ArtifactDamaged(f"{path.name} is {total} bytes but its manifest says {size}: the file is damaged")
    if digest.hexdigest() != expected:
        raise ArtifactDamaged(f"{path.name} does not match the sha256 in its manifest: the file is damaged")


def gunzip(chunks: Iterable[bytes], name: str = "artifact") -> Iterator[bytes]:
    """Decompress gzip members chunk by chunk; a stream that ends early is an error."""
    decompressor = isal_zlib.decompressobj(GZIP_WBITS)
    started = False
    for chunk in chunks:
        while chunk:
            started = True
            try:
                output = decompressor.decompress(chunk)
            except isal_zlib.error as error:
                raise ArtifactDamaged(f"{name} is not valid gzip data: {error}") from None
            if output:
                yield output
            if decompressor.eof:
                chunk = decompressor.unused_data
                decompressor = isal_zlib.decompressobj(GZIP_WBITS)
                started = False
            else:
                chunk = b""
    if started and not decompressor.eof:
        raise ArtifactDamaged(f"{name} ends in the middle of its gzip stream: the file is truncated")


def lines_of(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines (with their newline), for the small statement parts of a dump."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending


def dump_pieces(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """pg_dump(all) output as (piece, is COPY data): statement lines one by one (with their
    newline), the rows of each COPY in large blocks that end at a line end, the last of them
    with the terminator line ``\\.``.

    A Python step per row would make cutting one database out of a full backup slower than
    loading it; the rows are found with the row counter's terminator search instead.
    """
    pending, in_copy = b"", False
    for chunk in chunks:
        data = pending + chunk if pending else chunk
        position = 0
        while position < len(data):
            if in_copy:
                end = _copy_data_end(data, position)
                if end == -1:
                    end = data.rfind(b"\n", position) + 1
                    if end > position:
                        yield data[position:end], True
                        position = end
                    break
                yield data[position:end], True
                position, in_copy = end, False
                continue
            newline = data.find(b"\n", position)
            if newline == -1:
                break
            line = data[position:newline + 1]
            position = newline + 1
            yield line, False
            in_copy = line.startswith(COPY_PREFIX) and line.endswith(COPY_SUFFIX + b"\n")
        pending = data[position:]
    if pending:
        yield pending, in_copy


def _copy_data_end(data: bytes, position: int) -> int:
    """Where the COPY data starting at ``position`` (a line start) ends, after its terminator
    line; -1 when the terminator is not in ``data``."""
    if data.startswith(TERMINATOR, position):
        return position + len(TERMINATOR)
    newline = find_copy_end(data, position)
    return -1 if newline == -1 else newline + 1 + len(TERMINATOR)


def identifier_forms(name: str) -> set[str]:
    """How pg_dump may have written a role's or database's name: quoted, or bare when that is the same name."""
    forms = {'"' + name.replace('"', '""') + '"'}
    if name.isidentifier() and name == name.lower() and name.isascii():
        forms.add(name)
    return forms


def role_statement_variants(role: str) -> set[bytes]:
    """How pg_dumpall may have written ``CREATE ROLE role;``."""
    return {f"CREATE ROLE {form};\n".encode("utf-8") for form in identifier_forms(role)}


# pg_dumpall writes a role's stored password as one string literal (a SCRAM or md5 verifier).
_PASSWORD_CLAUSE = re.compile(rb" PASSWORD (?:'(?:[^']|'')*'|E'(?:[^'\\]|''|\\.)*')")


def edit_roles_section(chunks: Iterable[bytes], edit: Callable[[bytes], bytes]) -> Iterator[bytes]:
    """pg_dumpall output with ``edit`` applied to each line (newline included) of its roles section.

    Only the part before the first ``\\connect`` is split into lines; the rest, the
    databases with their data, streams through untouched.
    """
    iterator = iter(chunks)
    pending = b""
    for chunk in iterator:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        out = []
        for index, line in enumerate(complete):
            line += b"\n"
            if line.startswith(CONNECT_PREFIX):
                out.append(b"".join(part + b"\n" for part in complete[index:]) + pending)
                yield b"".join(out)
                yield from iterator
                return
            out.append(edit(line))
        if out:
            yield b"".join(out)
    if pending:
        yield edit(pending)


def skip_existing_roles(chunks: Iterable[bytes], existing_roles: Iterable[str]) -> Iterator[bytes]:
    """pg_dumpall output without the bare ``CREATE ROLE x;`` of roles the server already has.

    pg_dumpall follows each of those with ``ALTER ROLE x WITH ...`` setting every
    attribute, so skipping exactly that one statement restores the same role, while
    psql keeps stopping at every other error.
    """
    skip = set().union(*(role_statement_variants(role) for role in existing_roles)) if existing_roles else set()
    return edit_roles_section(chunks, lambda line: b"" if line in skip else line)


def skip_existing_tablespaces(
    chunks: Iterable[bytes], existing: Iterable[str], on_skipped: Callable[[str], None] = lambda name: None,
) -> Iterator[bytes]:
    """pg_dumpall output without the ``CREATE TABLESPACE x ...`` of tablespaces the server already has.

    On a rollback they are the backup's own; psql would stop at "already exists" after the
    databases were dropped. Their owner, options, comment and privileges still follow from
    the backup's other statements; ``on_skipped`` is told each name (its location stays as it is).
    """
    prefixes = {f"CREATE TABLESPACE {form} ".encode("utf-8"): name
                for name in existing for form in identifier_forms(name)}

    def edit(line: bytes) -> bytes:
        for prefix, name in prefixes.items():
            if line.startswith(prefix):
                on_skipped(name)
                return b""
        return line

    return edit_roles_section(chunks, edit) if prefixes else iter(chunks)


def keep_password_of(chunks: Iterable[bytes], role: str, on_kept: Callable[[], None] = lambda: None) -> Iterator[bytes]:
    """pg_dumpall output whose ``ALTER ROLE role WITH ...`` leaves that role's password alone.

    Used for the role the restore connects as: the backup's password would lock the
    running restore (psql reconnects for every database) and pgbackup itself out.
    Every other attribute is still set; ``on_kept`` is called when a password was dropped.
    """
    prefixes = tuple(f"ALTER ROLE {form} WITH ".encode("utf-8") for form in identifier_forms(role))

    def edit(line: bytes) -> bytes:
        if not line.startswith(prefixes):
            return line
        kept, count = _PASSWORD_CLAUSE.subn(b"", line, count=1)
        if count:
            on_kept()
        return kept

    return edit_roles_section(chunks, edit)


_TABLESPACE_LOCATION = re.compile(rb"CREATE TABLESPACE .* LOCATION '((?:[^']|'')*)';\n?$")


def tablespace_locations(chunks: Iterable[bytes]) -> list[str]:
    """The directories the CREATE TABLESPACE statements of pg_dumpall's globals name."""
    locations = []
    for line in globals_section(chunks):
        match = _TABLESPACE_LOCATION.match(line)
        if match:
            locations.append(match.group(1).replace(b"''", b"'").decode("utf-8"))
    return locations


def globals_section(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """pg_dumpall output up to its first ``\\connect``: roles, memberships, tablespaces."""
    for line in lines_of(chunks):
        if line.startswith(CONNECT_PREFIX):
            return
        yield line


# Statements about the database object itself (pg_dump --create writes them): they name it.
_DATABASE_LEVEL_PREFIXES = (
    b"CREATE DATABASE ", b"ALTER DATABASE ", b"COMMENT ON DATABASE ", b"GRANT ", b"REVOKE ",
    b"SECURITY LABEL ", b"ALTER ROLE ",
)
# pg_dump's plain output heads every entry with "-- Name: NAME; Type: TYPE; Schema: ...". The
# statements about the database itself are in entries of these types; a function body that
# happens to contain "ALTER DATABASE x ..." is in a FUNCTION entry and is left alone.
_ENTRY_HEADER = re.compile(rb"-- (?:Data for )?Name: (.*); Type: (.*?); Schema: ")
_DATABASE_ENTRY_TYPES = (b"DATABASE", b"DATABASE PROPERTIES")
_DATABASE_OBJECT_ENTRY_TYPES = (b"COMMENT", b"ACL", b"SECURITY LABEL")  # their name is "DATABASE x"
_SESSION_META_COMMANDS = (CONNECT_PREFIX, b"\\restrict ", b"\\unrestrict ")


def is_database_entry(header: bytes) -> bool | None:
    """For an entry header line of plain pg_dump output, whether the entry is about the database
    itself (its creation, properties, comment, privileges or security label); None for any other line."""
    match = _ENTRY_HEADER.match(header)
    if match is None:
        return None
    name, kind = match.groups()
    return kind in _DATABASE_ENTRY_TYPES or (kind in _DATABASE_OBJECT_ENTRY_TYPES and name.startswith(b"DATABASE "))


class DatabaseRename:
    """Rewrites the statements about database ``old`` (owner, settings, comment, privileges) to name ``new``.

    Only the name right after the keyword DATABASE, in statements that start like pg_dump's
    database-level ones, is replaced: ``GRANT CONNECT ON DATABASE old TO old`` names role ``old`` still.
    The callers apply it only inside the database's own entries (is_database_entry).
    """

    def __init__(self, old: str, new: str):
        forms = b"|".join(re.escape(form.encode("utf-8")) for form in sorted(identifier_forms(old), key=len, reverse=True))
        self._old = re.compile(rb"(?<= DATABASE )(?:" + forms + rb")(?=[ ;])")
        self._new = ('"' + new.replace('"', '""') + '"').encode("utf-8")

    def rewrite(self, line: bytes) -> bytes:
        if not line.startswith(_DATABASE_LEVEL_PREFIXES):
            return line
        return self._old.sub(lambda _: self._new, line, count=1)


def database_statements(chunks: Iterable[bytes], database: str, rename: DatabaseRename) -> list[bytes]:
    """What a ``pg_restore --create`` script sets on ``database`` (owner, connection limit,
    settings, a role's settings in it, comment, privileges, security labels), renamed; without
    its CREATE DATABASE (see create_database_options) and without psql's meta-commands.

    Whole entries are kept, so a statement that spans lines (a comment with a line break)
    stays whole; the entries' comment lines come along and do nothing.
    """
    statements = []
    state = _SectionState(database)
    for line in _outside_copy(chunks):
        state.statement_line(line)
        if state.in_database_entry and not line.startswith((b"CREATE DATABASE ", *_SESSION_META_COMMANDS)):
            statements.append(rename.rewrite(line))
    return statements


def database_section(chunks: Iterable[bytes], database: str, rename: DatabaseRename | None = None) -> Iterator[bytes]:
    """The part of pg_dump(all) output that fills ``database`` (after its ``\\connect``).

    The section runs from the line after ``\\connect database`` to its last ``\\unrestrict``
    line (newer pg_dump), or to "PostgreSQL database dump complete", or to a ``\\connect``
    to another database; pg_dump's reconnects to the same database (after setting its
    properties) are left out, psql stays where it is. With ``rename``, the statements about
    the database itself (owner, settings, comment, privileges), including the owner set
    before the ``\\connect``, name the database the section is restored into; only the
    database's own entries are renamed (is_database_entry). COPY data is passed through
    without being interpreted.
    """
    found = False
    state = _SectionState(database)
    before_connect: list[bytes] = []
    for line, is_data in dump_pieces(chunks):
        if is_data:
            if state.entered:
                yield line
            continue
        was_entered = state.entered
        emit, done = state.statement_line(line)
        if rename is not None and not was_entered:
            if state.entered:
                yield from before_connect
                before_connect = []
            elif state.in_database_entry and not line.startswith(b"CREATE DATABASE "):
                renamed = rename.rewrite(line)
                if renamed != line:
                    before_connect.append(renamed)
        if emit:
            found = True
            yield rename.rewrite(line) if rename is not None and state.in_database_entry else line
        if done:
            break
    if not found and not state.entered:
        raise PgBackupError(f"the full backup has no section for database {database!r}")


def create_database_options(chunks: Iterable[bytes], database: str) -> bytes | None:
    """What follows the name in the backup's ``CREATE DATABASE database ...;`` (encoding, locale, ...).

    Reads only up to the database's ``\\connect``; None when the dump has no such statement
    (pg_dump without --create).
    """
    options, _ = split_at_create_database(chunks, database)
    return options


def split_at_create_database(chunks: Iterable[bytes], database: str) -> tuple[bytes | None, Iterator[bytes]]:
    """create_database_options, and the dump read on from there for database_section: a full
    backup is read once per database, not once for its CREATE DATABASE and again for its data.

    The rest starts again with the statement lines since the last COPY data before the
    CREATE DATABASE (the database's own entries and whatever came between): database_section
    needs them to find the statements about the database made before its ``\\connect``, and
    nothing that came before them.
    """
    pattern = re.compile(rb"CREATE DATABASE (?:" + b"|".join(
        re.escape(form.encode("utf-8")) for form in identifier_forms(database)) + rb") (.*;)\n?$")
    state = _SectionState(database)
    pieces = dump_pieces(chunks)
    kept: list[bytes] = []
    for line, is_data in pieces:
        if is_data:
            kept = []
            continue
        kept.append(line)
        match = pattern.match(line)
        state.statement_line(line)
        if match or state.entered:
            return (match.group(1) if match else None), itertools.chain(kept, (piece for piece, _ in pieces))
    return None, iter(kept)


def _outside_copy(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of pg_dump output that are not COPY data."""
    return (piece for piece, is_data in dump_pieces(chunks) if not is_data)


class _SectionState:
    def __init__(self, database: str):
        self.database = database
        self.entered = False
        self.restricted = False
        self.after_unrestrict = False
        self.in_database_entry = False  # the current pg_dump entry is about the database itself

    def statement_line(self, line: bytes) -> tuple[bool, bool]:
        """(emit this line, the section has ended)."""
        stripped = line.rstrip(b"\n")
        if stripped.startswith(b"-- "):
            entry = is_database_entry(stripped)
            if entry is not None:
                self.in_database_entry = entry
        elif stripped.startswith(CONNECT_PREFIX):
            self.in_database_entry = False  # what follows a reconnect is the next session's setup
        if self.after_unrestrict:
            if not stripped or stripped.startswith(b"\\encoding "):
                # pg_dump sets the encoding before a \connect whose name needs quoting.
                return False, False
            self.after_unrestrict = False
            # pg_dump reconnects to the same database after setting its properties: the section goes on.
            return False, not self._connects_here(stripped)
        if stripped.startswith(CONNECT_PREFIX):
            if self.entered:
                return False, not self._connects_here(stripped)
            self.entered = self._connects_here(stripped)
            return False, False
        if not self.entered:
            return False, False
        if stripped.startswith(b"\\restrict "):
            self.restricted = True
        elif stripped.startswith(b"\\unrestrict "):
            self.after_unrestrict = True
        elif stripped == b"-- PostgreSQL database dump complete" and not self.restricted:
            return False, True
        return True, False

    def _connects_here(self, stripped: bytes) -> bool:
        return stripped.startswith(CONNECT_PREFIX) and parse_connect_line(stripped) == self.database
