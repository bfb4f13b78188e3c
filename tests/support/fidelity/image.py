"""What a server holds, taken down in a form two servers can be compared by: the globals
(`pg_dumpall --globals-only`), and per database its properties, its schema (`pg_dump
--schema-only`), a digest of every table's rows, every sequence's value and every large
object with its owner, privileges and comment.

Everything is read with the server's own client tools inside its container, so a server of
any major version can be taken down the same way, and in UTF8 whatever a database's encoding.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from tests.support.postgres import PgServer

# The session settings pg_dump and pg_dumpall write at the start of their output (and again
# after a reconnect). They say how to read the rest, not what the server holds. Other SET
# lines carry meaning (default_tablespace and default_table_access_method say where and how
# the next table is stored) and are kept.
_PREAMBLE_SETTINGS = frozenset({
    "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "transaction_timeout",
    "client_encoding", "standard_conforming_strings", "check_function_bodies", "xmloption",
    "client_min_messages", "row_security", "default_with_oids",
})
_SET_LINE = re.compile(r"SET (\w+) = .*;$")
# \restrict and \unrestrict carry a random key that changes with every dump.
_RANDOM_LINES = re.compile(r"\\(un)?restrict \S+$")
_PREAMBLE_SEARCH_PATH = "SELECT pg_catalog.set_config('search_path', '', false);"
# A policy's roles are a set that PostgreSQL keeps in the order of the roles' OIDs, which a
# restore (creating the roles in name order) changes: sorted here, as the set they are.
_POLICY_ROLES = re.compile(r"^(CREATE POLICY .*? TO )(.+?)((?: USING | WITH CHECK |;).*)$")

_RELATIONS_SQL = r"""
SELECT coalesce(json_agg(json_build_array(quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind,
                                          c.relispopulated) ORDER BY n.nspname, c.relname), '[]')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'S') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
"""

_PROPERTIES_SQL = """
SELECT jsonb_build_object(
    'owner', pg_get_userbyid(d.datdba),
    'tablespace', t.spcname,
    'privileges', (SELECT to_jsonb(array_agg(a::text ORDER BY a::text)) FROM unnest(d.datacl) AS a),
    'comment', shobj_description(d.oid, 'pg_database'),
    'settings', (SELECT jsonb_object_agg(coalesce(r.rolname, '(every role)'), s.setconfig)
                 FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
                 WHERE s.setdatabase = d.oid)
) || (to_jsonb(d) - ARRAY['oid', 'datname', 'datdba', 'dattablespace', 'datacl', 'datfrozenxid', 'datminmxid',
                          'datlastsysoid'])
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
WHERE d.datname = current_database()
"""

_LARGE_OBJECTS_SQL = """
SELECT coalesce(jsonb_object_agg(m.oid::text, jsonb_build_object(
    'owner', pg_get_userbyid(m.lomowner),
    'privileges', (SELECT to_jsonb(array_agg(a::text ORDER BY a::text)) FROM unnest(m.lomacl) AS a),
    'comment', obj_description(m.oid, 'pg_largeobject'),
    'content', md5(lo_get(m.oid)))), '{}')
FROM pg_largeobject_metadata m
"""


# pg_dump writes every subscription disabled and unconnected; its state is read here.
_SUBSCRIPTIONS_SQL = """
SELECT coalesce(jsonb_object_agg(s.subname, (to_jsonb(s) - ARRAY['oid', 'subdbid', 'subowner'])
                                            || jsonb_build_object('owner', pg_get_userbyid(s.subowner))), '{}')
FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
WHERE d.datname = current_database()
"""


@dataclass(frozen=True)
class DatabaseImage:
    properties: dict[str, object]  # encoding, locale, owner, settings, comment, privileges, ...
    schema: tuple[str, ...]  # pg_dump --schema-only, normalised
    rows: dict[str, str]  # "count md5" of each table's and materialized view's rows
    sequences: dict[str, str]  # "last_value is_called"
    large_objects: dict[str, dict]
    subscriptions: dict[str, dict]


@dataclass(frozen=True)
class ServerImage:
    globals: tuple[str, ...]  # pg_dumpall --globals-only, normalised
    databases: dict[str, DatabaseImage] = field(default_factory=dict)


def take_image(server: PgServer, databases: Iterable[str]) -> ServerImage:
    """The server's globals and the named databases, as they are now."""
    return ServerImage(
        globals=normalise_dump(run_tool(server, "pg_dumpall", "--globals-only")),
        databases={database: take_database_image(server, database) for database in databases},
    )


def take_database_image(server: PgServer, database: str) -> DatabaseImage:
    dbname = conninfo(database)
    relations = json.loads(query(server, _RELATIONS_SQL, database))
    return DatabaseImage(
        properties=json.loads(query(server, _PROPERTIES_SQL, database)),
        schema=normalise_dump(run_tool(server, "pg_dump", "--schema-only", f"--dbname={dbname}")),
        rows=_row_digests(server, database, relations),
        sequences=_sequence_values(server, database, relations),
        large_objects=json.loads(query(server, _LARGE_OBJECTS_SQL, database)),
        subscriptions=json.loads(query(server, _SUBSCRIPTIONS_SQL, database)),
    )


def query(server: PgServer, sql: str, database: str) -> str:
    """psql's output for ``sql``, in UTF8 whatever the database's encoding."""
    return server.psql("SET client_encoding = 'UTF8';\n" + sql, db=database)


def table_rows(server: PgServer, database: str, table: str) -> list[dict]:
    """Every row of ``table`` (a quoted, qualified name) as a JSON object, in the order of the rows'
    text; for showing how two tables differ."""
    rows = query(server, f"SELECT json_agg(to_jsonb(r) ORDER BY r::text) FROM ONLY {table} AS r", database)
    return json.loads(rows) or []


def column_differences(expected: list[dict], actual: list[dict]) -> list[str]:
    """Which columns hold other values (as multisets), with the first row where each differs."""
    if len(expected) != len(actual):
        return [f"{len(expected)} rows expected, {len(actual)} there"]
    found = []
    for column in sorted({key for row in expected + actual for key in row}):
        want = sorted(json.dumps(row.get(column), sort_keys=True) for row in expected)
        got = sorted(json.dumps(row.get(column), sort_keys=True) for row in actual)
        if want != got:
            example = next(((a, b) for a, b in zip(want, got) if a != b), ("", ""))
            changed = sum(1 for a, b in zip(want, got) if a != b)
            found.append(f"column {column}: {changed} of {len(want)} values differ, e.g. {example[0]} -> {example[1]}")
    return found


def run_tool(server: PgServer, program: str, *args: str) -> str:
    """Run one of the server's own client programs inside its container; its stdout (in UTF8)."""
    exit_code, (stdout, stderr) = server.container.exec_run(
        [program, "--no-password", f"--username={server.user}", *args], user="postgres", demux=True,
        environment={"PGCLIENTENCODING": "UTF8"},
    )
    if exit_code != 0:
        raise AssertionError(f"{program} {' '.join(args)} on {server.name} failed with exit code {exit_code}: "
                             f"{(stderr or b'').decode(errors='replace')}")
    return (stdout or b"").decode()


def conninfo(database: str) -> str:
    escaped = database.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


def normalise_dump(text: str) -> tuple[str, ...]:
    """pg_dump(all) output without what changes from dump to dump but says nothing about the
    server: comment lines, the session settings of its preamble, the random keys of
    \\restrict, blank lines. Nothing is reordered."""
    kept = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("--") or _RANDOM_LINES.match(line) or line == _PREAMBLE_SEARCH_PATH:
            continue
        setting = _SET_LINE.match(line)
        if setting and setting.group(1) in _PREAMBLE_SETTINGS:
            continue
        kept.append(_policy_roles_sorted(line))
    return tuple(kept)


def _policy_roles_sorted(line: str) -> str:
    match = _POLICY_ROLES.match(line)
    if not match or not line.startswith("CREATE POLICY "):
        return line
    head, roles, tail = match.groups()
    return head + ", ".join(sorted(roles.split(", "))) + tail


def _row_digests(server: PgServer, database: str, relations: list) -> dict[str, str]:
    parts = []
    for name, kind, populated in relations:
        if kind == "S":
            continue
        if not populated:
            parts.append(f"SELECT {_literal(name)}, 'not populated'")
        else:
            parts.append(f"SELECT {_literal(name)}, (SELECT count(*) || ' ' || "
                         f"coalesce(md5(string_agg(r::text, E'\\n' ORDER BY r::text)), '-') FROM ONLY {name} AS r)")
    return _json_object(server, database, parts)


def _sequence_values(server: PgServer, database: str, relations: list) -> dict[str, str]:
    parts = [f"SELECT {_literal(name)}, (SELECT last_value || ' ' || is_called FROM {name})"
             for name, kind, _ in relations if kind == "S"]
    return _json_object(server, database, parts)


def _json_object(server: PgServer, database: str, selects: list[str]) -> dict[str, str]:
    if not selects:
        return {}
    union = "\nUNION ALL ".join(selects)
    return json.loads(query(server, f"SELECT json_object_agg(k, v) FROM ({union}) AS s(k, v)", database))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def without_lines(lines: tuple[str, ...], pattern: re.Pattern) -> tuple[str, ...]:
    return tuple(line for line in lines if not pattern.search(line))


def renamed(image: ServerImage, database: str, as_name: str) -> ServerImage:
    """The image with one database under another name (a restore --into compares with it)."""
    databases = {(as_name if name == database else name): value for name, value in image.databases.items()}
    return replace(image, databases=databases)


def differences(expected: DatabaseImage | ServerImage, actual: DatabaseImage | ServerImage) -> list[str]:
    """Human-readable differences, empty when the two are equal."""
    if isinstance(expected, ServerImage):
        found = _diff_lines("globals", expected.globals, actual.globals)
        for name in sorted(set(expected.databases) | set(actual.databases)):
            if name not in actual.databases:
                found.append(f"database {name!r} is missing")
            elif name not in expected.databases:
                found.append(f"database {name!r} is there but should not be")
            else:
                found += [f"[{name}] {line}" for line in differences(expected.databases[name], actual.databases[name])]
        return found
    found = []
    for part in ("properties", "rows", "sequences", "large_objects", "subscriptions"):
        want, got = getattr(expected, part), getattr(actual, part)
        for key in sorted(set(want) | set(got)):
            if want.get(key) != got.get(key):
                found.append(f"{part} {key}: expected {want.get(key)!r}, got {got.get(key)!r}")
    return found + _diff_lines("schema", expected.schema, actual.schema)


def _diff_lines(label: str, expected: tuple[str, ...], actual: tuple[str, ...]) -> list[str]:
    if expected == actual:
        return []
    diff = difflib.unified_diff(expected, actual, f"{label} expected", f"{label} actual", n=2, lineterm="")
    return [f"{label}: " + "\n".join(diff)]
