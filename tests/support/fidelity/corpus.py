"""Loading the fidelity corpus into a server.

globals.sql makes the roles, the tablespace and the databases; each database's own file
fills it. A file named NAME-17.sql holds what PostgreSQL 17 adds to NAME.sql and is loaded
on servers of major version 17 and later.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.postgres import PgServer

CORPUS_DIR = Path(__file__).resolve().parent
MAIN_DATABASE = "fidelity"
LATIN1_DATABASE = 'fidelity latin1 "db"'
DATABASES = (MAIN_DATABASE, LATIN1_DATABASE)
TABLESPACE_DIRECTORY = "/var/lib/postgresql/fid_space"
# Where each file is loaded, in this order.
FILES = (
    ("globals", "postgres"),
    ("fidelity", MAIN_DATABASE),
    ("fidelity_latin1", LATIN1_DATABASE),
    ("subscriptions", LATIN1_DATABASE),
)
NEWER_MAJOR = 17


def make_tablespace_directory(server: PgServer) -> None:
    """The corpus tablespace's directory; CREATE TABLESPACE (and a restore of it) needs it."""
    exit_code, output = server.container.exec_run(
        ["sh", "-c", f"mkdir -p {TABLESPACE_DIRECTORY} && chown postgres:postgres {TABLESPACE_DIRECTORY}"]
    )
    if exit_code != 0:
        raise AssertionError(f"cannot create {TABLESPACE_DIRECTORY} in {server.name}: {output.decode()}")


def load_corpus(server: PgServer, major: int) -> None:
    """Create the corpus in an empty server of PostgreSQL ``major``."""
    make_tablespace_directory(server)
    for name, database in FILES:
        files = [CORPUS_DIR / f"{name}.sql"]
        newer = CORPUS_DIR / f"{name}-{NEWER_MAJOR}.sql"
        if major >= NEWER_MAJOR and newer.exists():
            files.append(newer)
        for path in files:
            # The files are UTF8; psql would take them for the database's encoding (LATIN1, say).
            server.psql("SET client_encoding = 'UTF8';\n" + path.read_text(encoding="utf-8"), db=database)
