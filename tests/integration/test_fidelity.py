"""Restore fidelity: the corpus of tests/support/fidelity (every kind of object pg_dump handles)
survives every kind of backup and every restore path, on PostgreSQL 15 and 17.

One source server per major holds the corpus and is backed up every way (`backup full`,
`backup databases` in custom, plain and directory format, `backup pre-migration`). Each
restore path is compared with the source: globals, every database's properties and schema,
every table's rows, sequence values, large objects, subscriptions (tests/support/fidelity/
image.py). The runbook's own `gunzip -c FULL.sql.gz | psql` into a fresh server is the
reference for what a logical dump can carry at all: what even it changes is a named allowance
(tests/support/fidelity/allowances.py), asserted where it happens. Every pgbackup path must be
at least as faithful as the reference.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.identity import INSTANCE_ID_FILE
from tests.support import docker_env
from tests.support.fidelity import allowances
from tests.support.fidelity.corpus import (
    DATABASES,
    MAIN_DATABASE,
    load_corpus,
    make_tablespace_directory,
)
from tests.support.fidelity.image import (
    ServerImage,
    column_differences,
    differences,
    renamed,
    table_rows,
    take_image,
)
from tests.support.pgbackup_cli import REPO_ROOT, artifact_paths, exec_env, pgbackup
from tests.support.postgres import PgServer, quote_identifier, start_postgres

MAJORS = (15, 17)
FORMATS = ("custom", "plain", "directory")
# The databases a full backup restores and the comparison covers (postgres is in it too).
FULL_DATABASES = ("postgres", *DATABASES)
CUSTOMERS = "app.customers"


@dataclass
class Source:
    """The corpus server of one major and its backups."""

    major: int
    server: PgServer
    image_tag: str
    before: ServerImage
    directories: dict[str, Path]  # format -> BACKUP_DIR holding that format's dumps (and a full backup)
    full: Path
    pre_migration: Path
    dumps: dict[tuple[str, str], Path]  # (format, database) -> artifact

    def env(self, target: PgServer, directory: Path | None = None, **settings: str) -> dict[str, str]:
        """Settings for pgbackup against ``target`` (docker exec), reading this source's backups."""
        return exec_env(target, directory or self.directories["custom"], **settings)


@pytest.fixture(scope="module", params=MAJORS, ids=lambda major: f"pg{major}")
def source(request, docker_client, tmp_path_factory):
    """A server of the major holding the corpus, backed up every way pgbackup can."""
    major = request.param
    try:
        image_tag = docker_env.select_postgres_image(docker_client, major)
    except (LookupError, subprocess.CalledProcessError) as error:
        pytest.fail(f"no PostgreSQL {major} image to test with: {error}", pytrace=False)
    server = start_postgres(docker_client, image_tag, databases=())
    try:
        load_corpus(server, major)
        base = tmp_path_factory.mktemp(f"fidelity-pg{major}")
        directories = {dump_format: base / dump_format for dump_format in FORMATS}
        (full,) = backup(exec_env(server, directories["custom"]), "full")
        for directory in (directories["plain"], directories["directory"]):  # one install (daemon/identity.py)
            directory.mkdir()
            shutil.copy2(directories["custom"] / INSTANCE_ID_FILE, directory / INSTANCE_ID_FILE)
        (pre_migration,) = backup(exec_env(server, directories["plain"]), "pre-migration")
        dumps = {}
        for dump_format, directory in directories.items():
            for artifact in backup(exec_env(server, directory, BACKUP_FORMAT=dump_format), "databases"):
                dumps[(dump_format, manifest_target(artifact))] = artifact
        # `verify --latest` restores the newest full backup first, then each database's dump.
        copy_artifact(full, directories["directory"])
        yield Source(major, server, image_tag, take_image(server, FULL_DATABASES), directories, full, pre_migration,
                     dumps)
    finally:
        docker_env.remove_container(server.container)


@pytest.fixture(scope="module")
def restored(source, docker_client):
    """A fresh server that `restore full` filled from the full backup; the database and table
    restores below go into it. Yields the server, the restore's result and the connecting
    role's stored password from before the restore."""
    server = empty_server(docker_client, source)
    try:
        own_password = allowances.password_line(take_image(server, ()), server.user)
        result = pgbackup("restore", "full", "--from", str(source.full), "--yes", env=source.env(server))
        yield server, result, own_password
    finally:
        docker_env.remove_container(server.container)


def backup(env: dict[str, str], *what: str) -> list[Path]:
    result = pgbackup("backup", *what, env=env)
    assert result.returncode == 0, result.stderr
    return artifact_paths(result)


def manifest_target(artifact: Path) -> str:
    return json.loads(artifact.with_name(artifact.name + ".manifest.json").read_text())["target"]


def copy_artifact(artifact: Path, directory: Path) -> None:
    for path in (artifact, artifact.with_name(artifact.name + ".manifest.json")):
        shutil.copy2(path, directory / path.name)


def empty_server(docker_client, source: Source) -> PgServer:
    """A new server of the source's image; like any server the corpus is restored into, it needs
    the directory of the corpus tablespace."""
    server = start_postgres(docker_client, source.image_tag, databases=())
    make_tablespace_directory(server)
    return server


def drop_database(server: PgServer, name: str) -> None:
    """Drop a database, with its subscriptions first (PostgreSQL refuses to drop a database that
    has any); they are detached from their slot, which is not theirs to drop."""
    if name not in server.psql("SELECT datname FROM pg_database").splitlines():
        return
    subscriptions = server.psql("SELECT quote_ident(subname) FROM pg_subscription s JOIN pg_database d "
                                f"ON d.oid = s.subdbid WHERE d.datname = {quote_literal(name)}").splitlines()
    if subscriptions:
        server.psql("".join(f"ALTER SUBSCRIPTION {sub} DISABLE; ALTER SUBSCRIPTION {sub} SET (slot_name = NONE); "
                            f"DROP SUBSCRIPTION {sub};\n" for sub in subscriptions), db=name)
    server.psql(f"DROP DATABASE {quote_identifier(name)} WITH (FORCE)")


def reset_main_database(source: Source, server: PgServer) -> None:
    """The main database as the source has it again (restored from its custom dump), for a test
    that changes it."""
    result = pgbackup("restore", "database", MAIN_DATABASE, "--from", str(source.dumps[("custom", MAIN_DATABASE)]),
                      "--yes", env=source.env(server))
    assert result.returncode == 0, result.stderr


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def assert_same(expected: ServerImage, actual: ServerImage, source: PgServer | None = None,
                restored: PgServer | None = None, names: dict[str, str] | None = None) -> None:
    """No differences; where rows differ and both servers are given, the differing rows are shown
    (``names`` maps a database's name in the image to its name on ``restored``)."""
    found = differences(expected, actual)
    if found and source is not None and restored is not None:
        found += row_differences(expected, actual, source, restored, names or {})
    assert not found, "\n".join(found)


def row_differences(expected: ServerImage, actual: ServerImage, source: PgServer, restored: PgServer,
                    names: dict[str, str]) -> list[str]:
    shown = []
    for database, want in expected.databases.items():
        got = actual.databases.get(database)
        for table, digest in (want.rows.items() if got else ()):
            if got.rows.get(table) not in (digest, None) and digest != "not populated":
                before = table_rows(source, database, table)
                after = table_rows(restored, names.get(database, database), table)
                shown += [f"[{database}] rows of {table}: {line}" for line in column_differences(before, after)]
    return shown


def expected_after_pgbackup(source: Source, actual: ServerImage, server: PgServer, own_password: str) -> ServerImage:
    """The source as a pgbackup restore brings it back: with the allowances of the reference,
    and the connecting role's own password."""
    expected = allowances.only(source.before, *actual.databases)
    expected = allowances.subscriptions_come_back_disabled(expected, actual)
    return allowances.connecting_role_keeps_its_password(expected, actual, server.user, own_password)


class TestReference:
    """What a logical dump can carry at all: the runbook's manual full restore."""

    def test_the_runbooks_manual_restore_changes_only_the_allowances(self, source, docker_client):
        """`gunzip -c FULL | psql` into a fresh server brings back everything but the allowances:
        subscriptions come back disabled."""
        server = empty_server(docker_client, source)
        try:
            environment = {"PATH": os.environ["PATH"], "PG": server.name, "FILE": str(source.full)}
            manual = subprocess.run(["bash", "-euo", "pipefail", "-c", runbook_manual_command("full")],
                                    env=environment, capture_output=True, text=True, timeout=600, check=False)
            assert manual.returncode == 0, manual.stderr
            actual = take_image(server, FULL_DATABASES)
        finally:
            docker_env.remove_container(server.container)
        assert_same(allowances.subscriptions_come_back_disabled(source.before, actual), actual)


class TestFullRestore:
    def test_restore_full_into_an_empty_server(self, source, restored):
        """`restore full --from FULL` into an empty server brings back the whole corpus."""
        server, result, own_password = restored
        assert result.returncode == 0, result.stderr
        actual = take_image(server, FULL_DATABASES)
        assert_same(expected_after_pgbackup(source, actual, server, own_password), actual, source.server, server)


class TestDatabaseRestore:
    @pytest.mark.parametrize("database", DATABASES, ids=("main", "latin1"))
    @pytest.mark.parametrize("artifact", (*FORMATS, "full"))
    @pytest.mark.parametrize("into", (False, True), ids=("in-place", "into"))
    def test_restore_database(self, source, restored, database, artifact, into):
        """`restore database NAME --from ARTIFACT` (replacing NAME, or --into another name) brings the
        database back as it was, from each dump format and from the full backup."""
        server, _, own_password = restored
        path = source.full if artifact == "full" else source.dumps[(artifact, database)]
        target = f"{database} copy" if into else database
        args = ("--into", target) if into else ()
        result = pgbackup("restore", "database", database, "--from", str(path), *args, "--yes",
                          env=source.env(server))
        try:
            assert result.returncode == 0, result.stderr
            actual = renamed(take_image(server, (target,)), target, database)
            assert_same(expected_after_pgbackup(source, actual, server, own_password), actual, source.server, server,
                        {database: target})
        finally:
            if into:
                drop_database(server, target)


class TestTableRestore:
    @pytest.mark.parametrize("dump_format", ("custom", "directory"))
    def test_restore_table_replaces_its_rows(self, source, restored, dump_format):
        """`restore table` replaces the rows of the corpus's richest table (identity, generated and
        domain columns, triggers, row-level security) with the backup's."""
        server, _, own_password = restored
        reset_main_database(source, server)
        server.psql(f"DELETE FROM {CUSTOMERS} WHERE id % 3 = 0; UPDATE {CUSTOMERS} SET nick = 'changed'",
                    db=MAIN_DATABASE)
        result = pgbackup("restore", "table", MAIN_DATABASE, CUSTOMERS, "--from",
                          str(source.dumps[(dump_format, MAIN_DATABASE)]), "--yes", env=source.env(server))
        assert result.returncode == 0, result.stderr
        actual = take_image(server, (MAIN_DATABASE,))
        assert_same(expected_after_pgbackup(source, actual, server, own_password), actual, source.server, server)


class TestRecoverRows:
    def test_recover_rows_brings_deleted_rows_back(self, source, restored):
        """Deleted rows of the richest table come back through `restore database --into` and
        `recover-rows`, every column as it was."""
        server, _, own_password = restored
        reset_main_database(source, server)
        server.psql(f"DELETE FROM {CUSTOMERS} WHERE id % 3 = 1", db=MAIN_DATABASE)
        env = source.env(server)
        copy = pgbackup("restore", "database", MAIN_DATABASE, "--from", str(source.dumps[("custom", MAIN_DATABASE)]),
                        "--into", "fidelity_before", env=env)
        assert copy.returncode == 0, copy.stderr
        recovered = pgbackup("recover-rows", MAIN_DATABASE, CUSTOMERS, "--from", "fidelity_before", "--drop-source",
                             "--yes", env=env)
        assert recovered.returncode == 0, recovered.stderr
        actual = take_image(server, (MAIN_DATABASE,))
        assert_same(expected_after_pgbackup(source, actual, server, own_password), actual, source.server, server)


class TestRollback:
    def test_restore_the_pre_migration_backup_over_the_server(self, source, restored):
        """`restore full --from PRE-MIGRATION --force` over a server that has the corpus (its roles
        exist, its databases are dropped first) brings everything back as it was."""
        server, _, own_password = restored
        result = pgbackup("restore", "full", "--from", str(source.pre_migration), "--force", "--yes",
                          env=source.env(server, source.directories["plain"]))
        assert result.returncode == 0, result.stderr
        actual = take_image(server, FULL_DATABASES)
        assert_same(expected_after_pgbackup(source, actual, server, own_password), actual, source.server, server)


class TestVerify:
    @pytest.mark.parametrize("dump_format", FORMATS)
    def test_verify_latest_restores_every_artifact(self, source, dump_format):
        """`pgbackup verify --latest` (the scheduled restore test's own restore: the full backup, then
        each database's newest dump, into a throwaway container) passes for every artifact."""
        result = pgbackup("verify", "--latest", env=exec_env(source.server, source.directories[dump_format]))
        assert result.returncode == 0, result.stdout + result.stderr
        verdicts = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
        assert len(verdicts) == 1 + len(FULL_DATABASES) and all(line.endswith(": OK") for line in verdicts), \
            result.stdout


def runbook_manual_command(name: str) -> str:
    """The shell block of docs/runbook.md's manual section named ``manual-NAME``."""
    text = (REPO_ROOT / "docs" / "runbook.md").read_text()
    for part in text.split("```sh manual-")[1:]:
        block_name, _, rest = part.partition("\n")
        if block_name.strip() == name:
            return rest.split("```", 1)[0]
    raise AssertionError(f"docs/runbook.md has no manual-{name} block")
