"""A deterministic benchmark dataset in a real PostgreSQL 15 container.

The rows are computed on the server with generate_series from the row number and a
fixed seed (md5 of seed and number), so every run with the same --seed and --size
produces the same tables. Three databases like the team's (authdb, apidb, admindb)
hold the kinds of columns an application has: text, jsonb, numeric, timestamps,
UUIDs, arrays, inet, with primary keys and secondary indexes.

The size is the approximate byte count of the raw `pg_dumpall` output; the exact
figure is measured after loading (`raw_dump_bytes`).

Three profiles differ in how well the dump compresses (gzip -6 of the raw `pg_dumpall`):
``mixed`` (the tables above; about 4.5:1), ``low`` (hex digests, UUIDs and bytea of
sha256 output; about 1.8:1) and ``high`` (templated log lines and JSON with few distinct
values; about 10:1). The same three databases hold them.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import docker

from tests.support import docker_env
from tests.support.postgres import PgServer, start_postgres

DATABASES = ("authdb", "apidb", "admindb")
DEFAULT_SEED = 20261126
LOAD_WORKERS = 2

# Settings of the source server. fsync and WAL are off the critical path of a load
# that can be repeated; they do not change how fast a dump reads. The restore
# targets run with the image's defaults.
SOURCE_SERVER_OPTIONS = (
    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
    "-c", "wal_level=minimal", "-c", "max_wal_senders=0", "-c", "max_wal_size=8GB",
    "-c", "checkpoint_timeout=1h", "-c", "shared_buffers=256MB", "-c", "maintenance_work_mem=256MB",
)

# About 1.5 kB of mixed prose, with a few non-ASCII words; row text is a slice of it.
_PROSE = (
    "The quarterly report shows steady growth in active accounts across every region. "
    "Customers asked for faster exports, better search and a clearer invoice layout; "
    "the support team closed most tickets within a day. Straße, café, naïve and Ünïcödé "
    "names appear in the address book and must survive every backup and restore. "
    "Deployment moved to a blue-green setup, the API gateway now retries idempotent "
    "requests, and the knowledge base gained an index over titles and tags. "
    "Security review: rotate tokens every ninety days, keep audit entries for a year, "
    "never log a password or a session secret. Next steps include sharding the request "
    "log, archiving old sessions, and measuring how long a full restore takes, because "
    "the time to restore decides how long an outage lasts. Lorem ipsum dolor sit amet, "
    "consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore "
    "magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris "
    "nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in "
    "voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat "
    "cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum."
)

# Helpers live in pg_temp: they exist only for the loading session and are never dumped.
_HELPERS = """
CREATE FUNCTION pg_temp.h(seed bigint, n bigint, salt text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT md5(seed::text || ':' || salt || ':' || n::text) $$;
CREATE FUNCTION pg_temp.num(seed bigint, n bigint, salt int) RETURNS bigint
    LANGUAGE sql IMMUTABLE AS $$ SELECT hashint8extended(n, seed * 1000 + salt) & 281474976710655 $$;
CREATE FUNCTION pg_temp.prose(seed bigint, n bigint, len int) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
        SELECT substr({prose}, 1 + (pg_temp.num(seed, n, 0) % 700)::int, len) $$;
"""


@dataclass(frozen=True)
class Table:
    database: str
    name: str
    share: float  # of the whole dataset's raw dump bytes
    bytes_per_row: int  # approximate, in the dump's COPY text
    create: str
    insert: str  # {seed}, {lo}, {hi}
    indexes: tuple[str, ...] = ()


TABLES = (
    Table(
        "authdb", "users", 0.12, 308,
        """CREATE TABLE users (
            id bigint NOT NULL, email text NOT NULL, display_name text, password_hash text,
            profile jsonb, balance numeric(12,2), created_at timestamptz NOT NULL,
            last_login timestamptz, token uuid NOT NULL, roles text[])""",
        """INSERT INTO users
        SELECT g, 'user' || g || '@example.test',
               initcap(split_part(pg_temp.prose({seed}, g, 40), ' ', 2)) || ' ' || g,
               '$2b$12$' || pg_temp.h({seed}, g, 'pw'),
               jsonb_build_object('locale', (ARRAY['de-DE','en-US','fr-FR','tr-TR'])[1 + g % 4],
                                  'newsletter', g % 3 = 0, 'theme', (ARRAY['dark','light'])[1 + g % 2],
                                  'bio', pg_temp.prose({seed}, g, 30 + (g % 60)::int)),
               (pg_temp.num({seed}, g, 1) % 10000000) / 100.0,
               timestamptz '2023-01-01 00:00:00+00' + (pg_temp.num({seed}, g, 2) % 60000000) * interval '1 second',
               timestamptz '2026-01-01 00:00:00+00' + (pg_temp.num({seed}, g, 3) % 20000000) * interval '1 second',
               pg_temp.h({seed}, g, 'tok')::uuid,
               CASE WHEN g % 50 = 0 THEN ARRAY['admin','user'] ELSE ARRAY['user'] END
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE users ADD PRIMARY KEY (id)", "CREATE UNIQUE INDEX users_email ON users (email)",
         "CREATE INDEX users_created_at ON users (created_at)"),
    ),
    Table(
        "authdb", "sessions", 0.13, 200,
        """CREATE TABLE sessions (
            id bigint NOT NULL, user_id bigint NOT NULL, session_key uuid NOT NULL, ip inet,
            user_agent text, started_at timestamptz NOT NULL, expires_at timestamptz, data jsonb)""",
        """INSERT INTO sessions
        SELECT g, 1 + pg_temp.num({seed}, g, 4) % 100000, pg_temp.h({seed}, g, 'sk')::uuid,
               ('10.' || g % 250 || '.' || (g / 250) % 250 || '.' || (g / 62500) % 250)::inet,
               (ARRAY['Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0',
                      'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) Safari/605.1.15',
                      'curl/8.5.0', 'python-requests/2.32.3'])[1 + g % 4],
               timestamptz '2026-06-01 00:00:00+00' + g * interval '7 seconds',
               timestamptz '2026-06-02 00:00:00+00' + g * interval '7 seconds',
               jsonb_build_object('csrf', pg_temp.h({seed}, g, 'csrf'), 'mfa', g % 5 = 0)
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE sessions ADD PRIMARY KEY (id)", "CREATE INDEX sessions_user ON sessions (user_id)"),
    ),
    Table(
        "apidb", "requests", 0.30, 189,
        """CREATE TABLE requests (
            id bigint NOT NULL, request_id uuid NOT NULL, method text NOT NULL, path text NOT NULL,
            status smallint NOT NULL, duration_ms numeric(10,3), at timestamptz NOT NULL, payload jsonb)""",
        """INSERT INTO requests
        SELECT g, pg_temp.h({seed}, g, 'rid')::uuid, (ARRAY['GET','GET','GET','POST','PUT','DELETE'])[1 + g % 6],
               '/v1/' || (ARRAY['items','orders','users','search','kb'])[1 + g % 5] || '/' || (pg_temp.num({seed}, g, 5) % 100000),
               (ARRAY[200,200,200,201,204,304,400,404,500])[1 + g % 9],
               (pg_temp.num({seed}, g, 6) % 2000000) / 1000.0,
               timestamptz '2026-01-01 00:00:00+00' + g * interval '250 milliseconds',
               jsonb_build_object('query', pg_temp.prose({seed}, g, 20 + (g % 40)::int),
                                  'page', g % 20, 'client', 'app-' || g % 17)
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE requests ADD PRIMARY KEY (id)", "CREATE INDEX requests_at ON requests (at)"),
    ),
    Table(
        "apidb", "orders", 0.20, 265,
        """CREATE TABLE orders (
            id bigint NOT NULL, customer uuid NOT NULL, amount numeric(14,2) NOT NULL, currency char(3),
            items jsonb NOT NULL, note text, created_at timestamptz NOT NULL, shipped_at timestamptz)""",
        """INSERT INTO orders
        SELECT g, pg_temp.h({seed}, 1 + g % 50000, 'cust')::uuid,
               (pg_temp.num({seed}, g, 7) % 5000000) / 100.0, (ARRAY['EUR','USD','TRY'])[1 + g % 3],
               jsonb_build_array(
                   jsonb_build_object('sku', 'SKU-' || pg_temp.num({seed}, g, 8) % 9999, 'qty', 1 + g % 4,
                                      'price', (pg_temp.num({seed}, g, 9) % 20000) / 100.0),
                   jsonb_build_object('sku', 'SKU-' || pg_temp.num({seed}, g, 10) % 9999, 'qty', 1 + g % 3,
                                      'price', (pg_temp.num({seed}, g, 11) % 20000) / 100.0)),
               CASE WHEN g % 3 = 0 THEN pg_temp.prose({seed}, g, 60 + (g % 120)::int) END,
               timestamptz '2025-01-01 00:00:00+00' + g * interval '30 seconds',
               CASE WHEN g % 10 <> 0 THEN timestamptz '2025-01-03 00:00:00+00' + g * interval '30 seconds' END
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE orders ADD PRIMARY KEY (id)", "CREATE INDEX orders_customer ON orders (customer)"),
    ),
    Table(
        "admindb", "documents", 0.17, 676,
        """CREATE TABLE documents (
            id bigint NOT NULL, title text NOT NULL, body text, tags text[], author uuid,
            version integer, updated_at timestamptz)""",
        """INSERT INTO documents
        SELECT g, 'Document ' || g || ': ' || pg_temp.prose({seed}, g, 40),
               pg_temp.prose({seed}, g, 300 + (g % 500)::int),
               ARRAY['kb', (ARRAY['howto','policy','faq','runbook'])[1 + g % 4]],
               pg_temp.h({seed}, 1 + g % 200, 'auth')::uuid, 1 + g % 7,
               timestamptz '2024-01-01 00:00:00+00' + g * interval '3 minutes'
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE documents ADD PRIMARY KEY (id)", "CREATE INDEX documents_updated ON documents (updated_at)"),
    ),
    Table(
        "admindb", "audit_log", 0.08, 199,
        """CREATE TABLE audit_log (
            id bigint NOT NULL, actor text NOT NULL, action text NOT NULL, details jsonb, at timestamptz NOT NULL)""",
        """INSERT INTO audit_log
        SELECT g, 'user' || (1 + pg_temp.num({seed}, g, 12) % 100000) || '@example.test',
               (ARRAY['login','logout','update_profile','export','delete','grant'])[1 + g % 6],
               jsonb_build_object('ip', '192.168.' || g % 256 || '.' || (g / 256) % 256,
                                  'ok', g % 13 <> 0, 'ref', pg_temp.h({seed}, g, 'ref'),
                                  'comment', pg_temp.prose({seed}, g, 20 + (g % 50)::int)),
               timestamptz '2025-06-01 00:00:00+00' + g * interval '2 seconds'
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE audit_log ADD PRIMARY KEY (id)", "CREATE INDEX audit_log_at ON audit_log (at)"),
    ),
)


# Low compressibility: what gzip cannot shrink much. sha256 output is as random as bytes get;
# COPY prints bytea and digests as hex, which gzip brings back to about half.
LOW_TABLES = (
    Table(
        "authdb", "tokens", 0.30, 330,
        """CREATE TABLE tokens (
            id bigint NOT NULL, token uuid NOT NULL, secret text NOT NULL, signature bytea NOT NULL,
            issued_at timestamptz NOT NULL)""",
        """INSERT INTO tokens
        SELECT g, pg_temp.h({seed}, g, 'token')::uuid,
               pg_temp.h({seed}, g, 's1') || pg_temp.h({seed}, g, 's2') || pg_temp.h({seed}, g, 's3'),
               sha256(int8send(g) || int8send({seed})) || sha256(int8send(g) || int8send({seed} + 1))
                   || sha256(int8send(g) || int8send({seed} + 2)) || sha256(int8send(g) || int8send({seed} + 3)),
               timestamptz '2020-01-01 00:00:00+00' + (pg_temp.num({seed}, g, 20) % 200000000) * interval '1 second'
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE tokens ADD PRIMARY KEY (id)",),
    ),
    Table(
        "apidb", "blobs", 0.45, 600,
        """CREATE TABLE blobs (id bigint NOT NULL, ref uuid NOT NULL, content bytea NOT NULL)""",
        """INSERT INTO blobs
        SELECT g, pg_temp.h({seed}, g, 'ref')::uuid,
               (SELECT string_agg(sha256(int8send(g) || int8send(part) || int8send({seed})), ''::bytea)
                FROM generate_series(1, 9) AS part)
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE blobs ADD PRIMARY KEY (id)",),
    ),
    Table(
        "admindb", "checksums", 0.25, 300,
        """CREATE TABLE checksums (id bigint NOT NULL, path text NOT NULL, sha256 text NOT NULL, size bigint,
            mime text, stored_at timestamptz)""",
        """INSERT INTO checksums
        SELECT g, '/srv/files/' || pg_temp.h({seed}, g, 'dir') || '/' || pg_temp.h({seed}, g, 'file') || '.bin',
               encode(sha256(int8send(g) || int8send({seed} + 9)), 'hex'), pg_temp.num({seed}, g, 21),
               (ARRAY['application/octet-stream','application/pdf','image/png'])[1 + g % 3],
               timestamptz '2025-01-01 00:00:00+00' + g * interval '1 minute'
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE checksums ADD PRIMARY KEY (id)",),
    ),
)

# High compressibility: templated log lines and JSON whose keys repeat and whose values come
# from short lists, as an application's request log and audit trail look.
HIGH_TABLES = (
    Table(
        "authdb", "audit_events", 0.30, 260,
        """CREATE TABLE audit_events (
            id bigint NOT NULL, session text NOT NULL, actor text NOT NULL, action text NOT NULL, details jsonb,
            at timestamptz NOT NULL)""",
        """INSERT INTO audit_events
        SELECT g, pg_temp.h({seed}, g / 4, 'session'), 'user' || (g % 40) || '@example.test',
               (ARRAY['login','logout','view'])[1 + g % 3],
               jsonb_build_object('ok', true, 'source', 'web', 'ip', '10.0.0.' || (g % 8),
                                  'client', 'Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0',
                                  'message', 'routine session check passed for the account'),
               timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE audit_events ADD PRIMARY KEY (id)",),
    ),
    Table(
        "apidb", "request_log", 0.45, 240,
        """CREATE TABLE request_log (id bigint NOT NULL, request_id uuid NOT NULL, level text NOT NULL,
            line text NOT NULL, at timestamptz NOT NULL)""",
        """INSERT INTO request_log
        SELECT g, pg_temp.h({seed}, g, 'request')::uuid, CASE WHEN g % 50 = 0 THEN 'WARN' ELSE 'INFO' END,
               'GET /v1/items/' || (g % 100) || ' HTTP/1.1 200 OK in ' || (g % 20) || ' ms '
                   || 'upstream=api-1 cache=hit user_agent="python-requests/2.32.3" route=items.show',
               timestamptz '2026-01-01 00:00:00+00' + g * interval '100 milliseconds'
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE request_log ADD PRIMARY KEY (id)",),
    ),
    Table(
        "admindb", "pages", 0.25, 500,
        """CREATE TABLE pages (id bigint NOT NULL, title text NOT NULL, body text, revision integer,
            author uuid)""",
        """INSERT INTO pages
        SELECT g, 'Page ' || (g % 100), substr({prose_literal}, 1 + (g % 5) * 3, 420), 1 + g % 3,
               pg_temp.h({seed}, g, 'author')::uuid
        FROM generate_series({lo}, {hi}) AS g""",
        ("ALTER TABLE pages ADD PRIMARY KEY (id)",),
    ),
)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    tables: tuple[Table, ...]


PROFILES = {
    "mixed": Profile("mixed", "application tables: text, jsonb, numbers, UUIDs (about 4.5:1 with gzip)", TABLES),
    "low": Profile("low", "hex digests, UUIDs and bytea of sha256 output (about 1.8:1)", LOW_TABLES),
    "high": Profile("high", "templated log lines and repetitive JSON (about 10:1)", HIGH_TABLES),
}
DEFAULT_PROFILE = "mixed"


@dataclass
class Dataset:
    server: PgServer
    size_mb: float
    seed: int
    profile: Profile = PROFILES[DEFAULT_PROFILE]
    rows: dict[str, int] = field(default_factory=dict)  # "db.table" -> rows
    raw_dump_bytes: int = 0
    load_seconds: float = 0.0

    @property
    def databases(self) -> tuple[str, ...]:
        return DATABASES

    def remove(self) -> None:
        docker_env.remove_container(self.server.container)


def rows_for(table: Table, size_mb: float) -> int:
    return max(100, int(size_mb * 1_000_000 * table.share / table.bytes_per_row))


def _helpers_sql() -> str:
    return _HELPERS.format(prose=_prose_literal())


def _prose_literal() -> str:
    return "'" + _PROSE.replace("'", "''") + "'"


def load_table(server: PgServer, table: Table, rows: int, seed: int) -> None:
    """Create and fill one table in one transaction (no WAL with wal_level=minimal), then index it."""
    insert = table.insert.format(seed=seed, lo=1, hi=rows, prose_literal=_prose_literal())
    server.psql(f"{_helpers_sql()}\nBEGIN;\n{table.create};\n{insert};\nCOMMIT;", db=table.database)
    server.psql(";\n".join(table.indexes) + ";", db=table.database)


def start_source(client: docker.DockerClient, image: str, *, name_prefix: str = "pgbackup-bench-src") -> PgServer:
    return start_postgres(
        client, image, databases=DATABASES, name=docker_env.unique_name(name_prefix),
        command=list(SOURCE_SERVER_OPTIONS), shm_size="512m",
    )


def create_dataset(
    client: docker.DockerClient, image: str, size_mb: float, *, seed: int = DEFAULT_SEED,
    name_prefix: str = "pgbackup-bench-src", profile: str = DEFAULT_PROFILE,
) -> Dataset:
    """Start a PostgreSQL container and fill it with about `size_mb` MB of raw dump of `profile`."""
    server = start_source(client, image, name_prefix=name_prefix)
    try:
        return fill(server, size_mb, seed=seed, profile=profile)
    except BaseException:
        docker_env.remove_container(server.container)
        raise


def fill(server: PgServer, size_mb: float, *, seed: int = DEFAULT_SEED, profile: str = DEFAULT_PROFILE) -> Dataset:
    """Fill a running server (with the three databases) with about `size_mb` MB of raw dump of `profile`."""
    chosen = PROFILES[profile]
    dataset = Dataset(server=server, size_mb=size_mb, seed=seed, profile=chosen)
    started = time.monotonic()
    dataset.rows = {f"{t.database}.{t.name}": rows_for(t, size_mb) for t in chosen.tables}
    # Largest tables first, so the two workers finish at about the same time.
    ordered = sorted(chosen.tables, key=lambda t: -t.share)
    with ThreadPoolExecutor(LOAD_WORKERS) as pool:
        for future in [pool.submit(load_table, server, t, dataset.rows[f"{t.database}.{t.name}"], seed)
                       for t in ordered]:
            future.result()
    with ThreadPoolExecutor(LOAD_WORKERS) as pool:
        for future in [pool.submit(server.psql, "VACUUM (FREEZE, ANALYZE);", db) for db in DATABASES]:
            future.result()
    server.psql("CHECKPOINT;")
    dataset.load_seconds = time.monotonic() - started
    dataset.raw_dump_bytes = raw_dump_bytes(server)
    return dataset


def raw_dump_bytes(server: PgServer) -> int:
    exit_code, output = server.container.exec_run(
        ["sh", "-c", 'pg_dumpall -U "$1" | wc -c', "sh", server.user], user="postgres"
    )
    if exit_code != 0:
        raise RuntimeError(f"pg_dumpall | wc -c failed: {output.decode(errors='replace')}")
    return int(output.strip())


def table_counts(server: PgServer, qualified_names) -> dict[str, int]:
    """Exact row counts on `server` of the tables named ``database.table`` (e.g. after a restore)."""
    counts = {}
    for database in DATABASES:
        names = [name.split(".", 1)[1] for name in qualified_names if name.split(".", 1)[0] == database]
        if not names:
            continue
        sql = " UNION ALL ".join(f"SELECT '{n}', count(*) FROM {n}" for n in names)
        for line in server.psql(sql, db=database).splitlines():
            name, count = line.split("|")
            counts[f"{database}.{name}"] = int(count)
    return counts
