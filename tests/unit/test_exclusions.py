"""EXCLUDE_DATABASES, EXCLUDE_TABLE_DATA and BACKUP_SCHEMAS: parsing, the dump commands they
give, the manifest's record of them and what a restore says about it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from daemon.backup.exclusions import Exclusions, LeftOut, name_pattern, table_pattern
from daemon.backup.plans import plan_databases, plan_full
from daemon.errors import SettingsError
from daemon.manifest import Manifest
from daemon.restore.left_out import (
    databases_left_out,
    excluded_database_hint,
    left_out_of_database,
    rows_left_out,
)
from daemon.settings import environment_variable_names, load_settings
from daemon.sources.postgres import ConnectionOptions, PostgresServer

SERVER = PostgresServer(transport=None, options=ConnectionOptions(user="postgres"))  # argv only: never runs


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Each test starts from an environment with none of the daemon's variables set."""
    for name in environment_variable_names():
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    monkeypatch.setenv("POSTGRES_CONTAINER", "pg")


def settings_problems(monkeypatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return caught.value.problems


def manifest(target: str = "apidb", **excluded: list[str]) -> Manifest:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return Manifest(kind="database", target=target, file="f", size_bytes=1, sha256="x", started_at=moment,
                    finished_at=moment, server_version="15.4", format="custom", compression="pg_dump",
                    excluded=excluded)


class TestSettings:
    def test_each_variable_is_parsed(self, monkeypatch):
        """EXCLUDE_DATABASES is a comma list; EXCLUDE_TABLE_DATA and BACKUP_SCHEMAS are DB:NAME,NAME;DB:NAME."""
        monkeypatch.setenv("EXCLUDE_DATABASES", "scratch, old")
        monkeypatch.setenv("EXCLUDE_TABLE_DATA", "apidb:request_logs, sessions;authdb:audit.events")
        monkeypatch.setenv("BACKUP_SCHEMAS", "apidb:api")
        settings = load_settings()
        assert settings.exclude_databases == ["scratch", "old"]
        assert settings.exclude_table_data == {"apidb": ("request_logs", "sessions"), "authdb": ("audit.events",)}
        assert settings.backup_schemas == {"apidb": ("api",)}

    @pytest.mark.parametrize("variable, item", [("EXCLUDE_TABLE_DATA", "TABLE"), ("BACKUP_SCHEMAS", "SCHEMA")])
    def test_bad_syntax_names_the_variable_and_the_syntax(self, monkeypatch, variable, item):
        """A database without names is refused with the variable's name, the syntax and an example."""
        (line,) = settings_problems(monkeypatch, **{variable: "apidb"})
        assert line.startswith(f"{variable}: 'apidb' is not DATABASE:{item}[,{item}...]")
        assert "e.g. 'apidb:" in line

    def test_a_database_both_backed_up_and_excluded_is_refused(self, monkeypatch):
        """BACKUP_DATABASES and EXCLUDE_DATABASES naming the same database is a settings error naming both."""
        (line,) = settings_problems(monkeypatch, BACKUP_DATABASES="apidb,authdb", EXCLUDE_DATABASES="authdb")
        assert "'authdb'" in line and "BACKUP_DATABASES" in line and "EXCLUDE_DATABASES" in line

    @pytest.mark.parametrize("variable", ["EXCLUDE_TABLE_DATA", "BACKUP_SCHEMAS"])
    def test_options_for_an_excluded_database_are_refused(self, monkeypatch, variable):
        """Choosing rows or schemas of a database EXCLUDE_DATABASES leaves out is a contradiction, refused."""
        (line,) = settings_problems(monkeypatch, EXCLUDE_DATABASES="apidb", **{variable: "apidb:x"})
        assert line.startswith(variable) and "EXCLUDE_DATABASES" in line


class TestPatterns:
    @pytest.mark.parametrize("name, pattern", [
        ("apidb", '"apidb"'), ("My.DB*", '"My.DB*"'), ('odd "q"', '"odd ""q"""'),
    ])
    def test_names_match_only_themselves(self, name, pattern):
        """Upper case, dots, wildcards and quotes in a name are quoted so the pattern matches it exactly."""
        assert name_pattern(name) == pattern

    @pytest.mark.parametrize("table, pattern", [
        ("request_logs", '"public"."request_logs"'), ("api.Requests", '"api"."Requests"'),
        ('Odd Table "quoted"', '"public"."Odd Table ""quoted"""'),
    ])
    def test_tables_are_schema_qualified(self, table, pattern):
        """A table without a schema is in public, as restores read it."""
        assert table_pattern(table) == pattern


class TestPlans:
    EXCLUSIONS = Exclusions(databases=("scratch",), table_data={"apidb": ("request_logs",)},
                            schemas={"apidb": ("api", "public")})

    def test_full_backup_excludes_databases_with_pg_dumpall(self):
        """The full backup passes --exclude-database and its manifest lists neither the database nor forgets it."""
        (plan,) = plan_full(SERVER, ["apidb", "scratch", "postgres"], exclusions=self.EXCLUSIONS)
        assert plan.argv[-1] == '--exclude-database="scratch"'
        assert plan.databases == ("apidb", "postgres")
        assert plan.excluded.as_record() == {"databases": ["scratch"]}

    @pytest.mark.parametrize("dump_format", ["plain", "custom", "directory"])
    def test_database_dump_leaves_out_rows_and_keeps_only_schemas(self, dump_format):
        """The database's dump gets --strict-names --schema for each schema and --exclude-table-data per table."""
        (plan,) = plan_databases(SERVER, ["apidb"], dump_format, 6, 2, self.EXCLUSIONS)
        options = ["--strict-names", '--schema="api"', '--schema="public"',
                   '--exclude-table-data="public"."request_logs"']
        start = plan.argv.index("--strict-names")
        assert list(plan.argv[start:start + 4]) == options
        assert plan.excluded.as_record() == {"table_data": ["request_logs"], "only_schemas": ["api", "public"]}

    def test_other_databases_are_dumped_whole(self):
        """A database the settings do not name is dumped without options and records nothing left out."""
        (plan,) = plan_databases(SERVER, ["authdb"], "custom", 6, 2, self.EXCLUSIONS)
        assert not any(arg.startswith(("--schema", "--exclude", "--strict")) for arg in plan.argv)
        assert plan.excluded.as_record() == {}

    def test_kept_databases_keep_their_order(self):
        """The per-database run without BACKUP_DATABASES dumps every database but the excluded ones."""
        assert self.EXCLUSIONS.kept(["b", "scratch", "a"]) == ["b", "a"]


class TestManifest:
    def test_excluded_round_trips_and_old_manifests_read(self):
        """The manifest keeps `excluded`; one written before the field reads with nothing left out."""
        written = manifest(table_data=["request_logs"])
        assert Manifest.from_json(written.to_json()).excluded == {"table_data": ["request_logs"]}
        old = written.to_json().replace('"excluded"', '"not_a_field_yet"')
        assert Manifest.from_json(old).excluded == {}

    def test_nothing_left_out_records_nothing(self):
        """A plan that leaves nothing out gives an empty `excluded`."""
        assert LeftOut().as_record() == {}


class TestRestoreNotes:
    def test_database_restore_says_which_rows_and_schemas_are_missing(self):
        """Restoring a database names each table restored empty and the schemas that were kept."""
        notes = left_out_of_database(manifest(table_data=["request_logs"], only_schemas=["api"]), "apidb")
        assert notes == [
            "rows of apidb.request_logs were not backed up (EXCLUDE_TABLE_DATA): the table was restored empty",
            "only schema api of apidb was backed up (BACKUP_SCHEMAS); no other schema is in this backup",
        ]

    def test_full_restore_names_the_databases_not_in_the_backup(self):
        """A full backup's restore says each excluded database is not in it, and why a restore of it fails."""
        full = manifest("all", databases=["scratch"])
        assert databases_left_out(full) == ["database 'scratch' is not in this backup (EXCLUDE_DATABASES)"]
        assert "EXCLUDE_DATABASES" in excluded_database_hint(full, "scratch")
        assert excluded_database_hint(full, "apidb") == ""

    @pytest.mark.parametrize("asked, left_out", [("request_logs", True), ("public.request_logs", True),
                                                 ("api.request_logs", False), ("sessions", False)])
    def test_rows_left_out_matches_the_table_however_named(self, asked, left_out):
        """A table named with or without its public schema is the same table."""
        assert rows_left_out(manifest(table_data=["request_logs"]), asked) is left_out

    def test_old_manifest_has_no_notes(self):
        """A manifest without `excluded` adds no notes."""
        assert left_out_of_database(manifest(), "apidb") == [] and databases_left_out(manifest("all")) == []
