"""EXCLUDE_DATABASES, EXCLUDE_TABLE_DATA and BACKUP_SCHEMAS against a real PostgreSQL server: what
the dumps leave out, what the manifests record, and what a real restore brings back and says."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.support.docker_env import remove_container
from tests.support.pgbackup_cli import artifact_paths, exec_env, log_events, pgbackup
from tests.support.postgres import start_postgres
from tests.support.sample_data import seed, table_fingerprints

EXCLUDED_DATABASE = "Scratch.DB*"  # upper case, a dot and a wildcard: only an exactly quoted name matches it
ROWS_LEFT_OUT = "api.requests,RequestLogs"  # RequestLogs: upper case, in public
LEFT_OUT_TABLES = ('api.requests', 'public."RequestLogs"')  # as table_fingerprints names them


@pytest.fixture(scope="module")
def source(docker_client, postgres_image):
    """One seeded server (authdb, apidb with "RequestLogs", admindb, "Scratch.DB*") for the module's tests;
    restores go into databases of new names next to the originals."""
    server = start_postgres(docker_client, postgres_image)
    try:
        seed(server)
        server.psql('CREATE TABLE "RequestLogs" (id int PRIMARY KEY, line text); '
                    "INSERT INTO \"RequestLogs\" SELECT g, 'GET /' || g FROM generate_series(1, 300) AS g;",
                    db="apidb")
        server.psql(f'CREATE DATABASE "{EXCLUDED_DATABASE}"')
        server.psql("CREATE TABLE scratch (n int); INSERT INTO scratch VALUES (1);", db=EXCLUDED_DATABASE)
        yield server
    finally:
        remove_container(server.container)


def manifest_of(artifact: Path) -> dict:
    return json.loads((artifact.parent / (artifact.name + ".manifest.json")).read_text())


def backed_up(env: dict[str, str], *args: str) -> list[Path]:
    result = pgbackup("backup", *args, env=env)
    assert result.returncode == 0, result.stderr
    return artifact_paths(result)


def restored(env: dict[str, str], *args: str) -> str:
    """`pgbackup restore ARGS --yes`; its standard output (the report)."""
    result = pgbackup("restore", *args, "--yes", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rows(server, table: str, database: str) -> int:
    return int(server.psql(f"SELECT count(*) FROM {table}", db=database))


class TestExcludeDatabases:
    def test_per_database_run_dumps_every_database_but_the_excluded_one(self, source, tmp_path):
        """Without BACKUP_DATABASES, `backup databases` dumps each database except EXCLUDE_DATABASES'."""
        env = exec_env(source, tmp_path, EXCLUDE_DATABASES=EXCLUDED_DATABASE)
        targets = {manifest_of(path)["target"] for path in backed_up(env, "databases")}
        assert {"authdb", "apidb", "admindb"} <= targets
        assert EXCLUDED_DATABASE not in targets

    def test_full_backup_leaves_the_database_out_and_its_restore_says_so(self, source, postgres_factory, tmp_path):
        """pg_dumpall leaves the database out, the manifest records it as excluded (not among its databases),
        `restore full` says it is not in the backup, and `restore database` of it names the reason."""
        env = exec_env(source, tmp_path, EXCLUDE_DATABASES=EXCLUDED_DATABASE)
        (artifact,) = backed_up(env, "full")
        manifest = manifest_of(artifact)
        assert EXCLUDED_DATABASE not in manifest["databases"] and "apidb" in manifest["databases"]
        assert manifest["excluded"] == {"databases": [EXCLUDED_DATABASE]}
        assert EXCLUDED_DATABASE.encode() not in gzip.decompress(artifact.read_bytes())

        target = postgres_factory(databases=())
        target_env = exec_env(target, tmp_path / "restore")
        report = restored(target_env, "full", "--from", str(artifact))
        assert f"note: database {EXCLUDED_DATABASE!r} is not in this backup (EXCLUDE_DATABASES)" in report
        databases = target.psql("SELECT datname FROM pg_database").splitlines()
        assert EXCLUDED_DATABASE not in databases and "apidb" in databases
        assert table_fingerprints(target, "apidb") == table_fingerprints(source, "apidb")

        refused = pgbackup("restore", "database", EXCLUDED_DATABASE, "--from", str(artifact), "--yes", env=target_env)
        assert refused.returncode != 0
        assert "does not contain database" in refused.stderr and "EXCLUDE_DATABASES left it out" in refused.stderr


class TestExcludeTableData:
    @pytest.mark.parametrize("dump_format", ["plain", "custom"])
    def test_tables_restore_empty_and_everything_else_whole(self, source, tmp_path, dump_format):
        """The tables' rows are left out and recorded; a real restore creates them empty, every other table
        with its rows (the row counts of a plain dump still check out), and its report names what is missing."""
        env = exec_env(source, tmp_path, BACKUP_FORMAT=dump_format, EXCLUDE_TABLE_DATA=f"apidb:{ROWS_LEFT_OUT}")
        (artifact,) = backed_up(env, "database", "apidb")
        manifest = manifest_of(artifact)
        assert manifest["excluded"] == {"table_data": ROWS_LEFT_OUT.split(",")}
        if dump_format == "plain":
            assert manifest["row_counts"]["apidb"] == {'public."Odd Table ""quoted"""': 200}  # no COPY of the others

        copy = f"apidb_rows_{dump_format}"
        report = restored(env, "database", "apidb", "--into", copy, "--from", str(artifact))
        assert "note: rows of apidb.api.requests were not backed up (EXCLUDE_TABLE_DATA)" in report
        assert "note: rows of apidb.RequestLogs were not backed up (EXCLUDE_TABLE_DATA)" in report
        assert [rows(source, table, copy) for table in LEFT_OUT_TABLES] == [0, 0]
        original = table_fingerprints(source, "apidb")
        kept = {table: fingerprint for table, fingerprint in original.items() if table not in LEFT_OUT_TABLES}
        assert len(kept) == len(original) - 2
        assert {table: table_fingerprints(source, copy)[table] for table in kept} == kept
        assert source.psql("SELECT count(*) > 0 FROM api.recent", db=copy) == "f"  # the view over it came back

    def test_a_name_the_database_does_not_have_is_reported_and_the_backup_keeps_everything_else(
            self, source, tmp_path):
        """EXCLUDE_TABLE_DATA with a typo: the run still backs up (it leaves out the tables that exist) and logs
        exclude_table_data_not_found naming only the missing table, in every run."""
        env = exec_env(source, tmp_path, EXCLUDE_TABLE_DATA=f"apidb:{ROWS_LEFT_OUT},api.no_such_table")
        result = pgbackup("backup", "database", "apidb", env=env)
        assert result.returncode == 0, result.stderr
        warnings = [event for event in log_events(result.stdout + result.stderr)
                    if event.get("event") == "exclude_table_data_not_found"]
        assert len(warnings) == 1 and warnings[0]["tables"] == ["api.no_such_table"], warnings
        assert warnings[0]["database"] == "apidb" and "EXCLUDE_TABLE_DATA" in warnings[0]["hint"]

        clean = exec_env(source, tmp_path / "clean", EXCLUDE_TABLE_DATA=f"apidb:{ROWS_LEFT_OUT}")
        result = pgbackup("backup", "database", "apidb", env=clean)
        assert result.returncode == 0, result.stderr
        assert not [event for event in log_events(result.stdout + result.stderr)
                    if event.get("event", "").startswith("exclude_table_data_not")]

    def test_restoring_one_such_table_is_refused_with_the_reason(self, source, tmp_path):
        """`restore table` of a table whose rows were left out says so instead of 'no such table'."""
        env = exec_env(source, tmp_path, EXCLUDE_TABLE_DATA=f"apidb:{ROWS_LEFT_OUT}")
        (artifact,) = backed_up(env, "database", "apidb")
        refused = pgbackup("restore", "table", "apidb", "api.requests", "--into", "apidb_one_table",
                           "--from", str(artifact), "--yes", env=env)
        assert refused.returncode != 0
        assert "EXCLUDE_TABLE_DATA left them out" in refused.stderr


class TestBackupSchemas:
    def test_only_the_named_schema_is_dumped_and_restored(self, source, tmp_path):
        """BACKUP_SCHEMAS=apidb:api dumps that schema alone: the restored copy has its tables and no other,
        and the report says only that schema was backed up."""
        env = exec_env(source, tmp_path, BACKUP_SCHEMAS="apidb:api")
        (artifact,) = backed_up(env, "database", "apidb")
        assert manifest_of(artifact)["excluded"] == {"only_schemas": ["api"]}

        report = restored(env, "database", "apidb", "--into", "apidb_schema_api", "--from", str(artifact))
        assert "note: only schema api of apidb was backed up (BACKUP_SCHEMAS)" in report
        assert list(table_fingerprints(source, "apidb_schema_api")) == ["api.requests"]
        assert table_fingerprints(source, "apidb_schema_api")["api.requests"] == \
            table_fingerprints(source, "apidb")["api.requests"]

    def test_a_schema_that_does_not_exist_fails_the_backup(self, source, tmp_path):
        """A misspelt schema fails the dump (--strict-names) instead of writing an empty backup."""
        result = pgbackup("backup", "database", "apidb", env=exec_env(source, tmp_path, BACKUP_SCHEMAS="apidb:apii"))
        assert result.returncode != 0
        assert "no matching schemas" in result.stderr
        assert not list(tmp_path.glob("apidb_*"))
