"""Deterministic sample data in several databases, and a way to compare servers table by table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import docker

from tests.support.docker_env import remove_container
from tests.support.postgres import PgServer, quote_identifier, start_postgres

# Types a real application uses, an odd table name, a sequence, an index, a view, and a role.
SAMPLE_SQL = {
    "authdb": """
        CREATE ROLE app_user LOGIN PASSWORD 'app-password';
        CREATE TABLE users (
            id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, profile jsonb, balance numeric(12,2),
            created_at timestamptz NOT NULL, token uuid, avatar bytea, tags text[]
        );
        INSERT INTO users (email, profile, balance, created_at, token, avatar, tags)
        SELECT 'user' || g || '@example.test', jsonb_build_object('n', g, 'name', 'Ünïcödé ' || g),
               (g * 7.31)::numeric(12,2), timestamptz '2025-01-01 00:00:00+00' + g * interval '37 minutes',
               md5(g::text)::uuid, decode(md5(g::text), 'hex'), ARRAY['a' || g % 5, 'tab\there']
        FROM generate_series(1, 5000) AS g;
        CREATE INDEX users_created ON users (created_at);
        CREATE TABLE sessions (id serial PRIMARY KEY, user_id bigint REFERENCES users(id), note text);
        INSERT INTO sessions (user_id, note) SELECT g % 5000 + 1, 'line1' || chr(10) || 'line2 ' || g
        FROM generate_series(1, 3000) AS g;
        GRANT SELECT ON users TO app_user;
    """,
    "apidb": '''
        CREATE SCHEMA api;
        CREATE TABLE api.requests (id bigint PRIMARY KEY, path text, payload jsonb, at timestamp);
        INSERT INTO api.requests SELECT g, '/v1/items/' || g, jsonb_build_object('q', repeat('x', g % 50)),
               timestamp '2025-06-01' + g * interval '1 second' FROM generate_series(1, 8000) AS g;
        CREATE TABLE "Odd Table ""quoted""" (k text PRIMARY KEY, v double precision);
        INSERT INTO "Odd Table ""quoted""" SELECT 'key' || g, g / 3.0 FROM generate_series(1, 200) AS g;
        CREATE VIEW api.recent AS SELECT * FROM api.requests WHERE id > 7000;
    ''',
    "admindb": """
        CREATE TABLE documents (id serial PRIMARY KEY, title text, body text);
        INSERT INTO documents (title, body) SELECT 'doc ' || g, repeat('lorem ipsum ', g % 40)
        FROM generate_series(1, 2000) AS g;
        CREATE TABLE knowledge_bases (id serial PRIMARY KEY, name text, settings jsonb);
        INSERT INTO knowledge_bases (name, settings) SELECT 'kb' || g, '{"enabled": true}'
        FROM generate_series(1, 50) AS g;
    """,
}

_TABLES_SQL = """
SELECT quote_ident(table_schema) || '.' || quote_ident(table_name)
FROM information_schema.tables
WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
"""


@contextmanager
def seeded_server(client: docker.DockerClient, image: str) -> Iterator[PgServer]:
    """A server with the sample data, for a module's tests; removed afterwards."""
    server = start_postgres(client, image)
    try:
        seed(server)
        yield server
    finally:
        remove_container(server.container)


def seed(server: PgServer) -> None:
    """Fill authdb, apidb and admindb with the sample data (the databases must exist)."""
    for database, sql in SAMPLE_SQL.items():
        server.psql(sql, db=database)


def user_databases(server: PgServer) -> list[str]:
    rows = server.psql("SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY 1")
    return [row for row in rows.splitlines() if row]


def table_fingerprints(server: PgServer, database: str) -> dict[str, tuple[int, str]]:
    """Row count and a hash of every row's text form, per table, in a stable order."""
    fingerprints = {}
    for table in filter(None, server.psql(_TABLES_SQL, db=database).splitlines()):
        row = server.psql(
            f"SELECT count(*) || '|' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') "
            f"FROM {table} AS t",
            db=database,
        )
        count, digest = row.split("|")
        fingerprints[table] = (int(count), digest)
    return fingerprints


def server_fingerprints(server: PgServer, databases: list[str]) -> dict[str, dict[str, tuple[int, str]]]:
    return {database: table_fingerprints(server, database) for database in databases}


def quoted(name: str) -> str:
    return quote_identifier(name)
