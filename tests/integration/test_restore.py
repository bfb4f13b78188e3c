"""The runbook's scenarios end to end against real PostgreSQL containers: back up with the
real CLI, break the data, restore with `pgbackup restore`, compare every table with the
original. Also broken artifacts, awkward database names, and the manual fallback."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.lock import backup_lock
from tests.support.mounts import read_only_mount
from tests.support.pgbackup_cli import REPO_ROOT, artifact_paths, exec_env, pgbackup, tcp_env
from tests.support.sample_data import seed, server_fingerprints, table_fingerprints

DATABASES = ["authdb", "apidb", "admindb"]


@pytest.fixture
def source(postgres_factory):
    server = postgres_factory()
    seed(server)
    return server


def backup(env: dict, *what: str) -> list[Path]:
    result = pgbackup("backup", *what, env=env)
    assert result.returncode == 0, result.stderr
    return artifact_paths(result)


def restore(env: dict, *args: str) -> subprocess.CompletedProcess:
    return pgbackup("restore", *args, env=env)


def manifest_of(artifact: Path) -> dict:
    return json.loads(artifact.with_name(artifact.name + ".manifest.json").read_text())


def database_names(server) -> set[str]:
    return set(filter(None, server.psql("SELECT datname FROM pg_database").splitlines()))


def forge(original: Path, name: str, data: bytes) -> Path:
    """A hand-made artifact whose manifest matches it exactly (so only its content is wrong)."""
    path = original.with_name(name)
    path.write_bytes(data)
    manifest = manifest_of(original)
    manifest.update(file=name, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    started_at=(datetime.fromisoformat(manifest["started_at"]) + timedelta(seconds=5)).isoformat())
    path.with_name(name + ".manifest.json").write_text(json.dumps(manifest))
    return path


def set_row_count(artifact: Path, database: str, table: str, rows: int) -> None:
    """Make the artifact's manifest count ``rows`` rows for ``table`` (the artifact itself is unchanged)."""
    manifest_file = artifact.with_name(artifact.name + ".manifest.json")
    manifest = json.loads(manifest_file.read_text())
    manifest["row_counts"][database][table] = rows
    manifest_file.write_text(json.dumps(manifest))


class TestCorruptedDatabase:
    """Runbook scenario 1: the database is lost; restore the latest full backup into a new server."""

    def test_full_restore_into_an_empty_server(self, source, postgres_factory, tmp_path):
        """`restore full --latest` rebuilds every database and role; all tables equal the original."""
        (artifact,) = backup(exec_env(source, tmp_path), "full")
        counts = manifest_of(artifact)["row_counts"]
        assert counts["authdb"]["public.users"] == 5000 and counts["apidb"]['public."Odd Table ""quoted"""'] == 200

        target = postgres_factory(databases=())
        result = restore(exec_env(target, tmp_path), "full", "--latest", "--yes")
        assert result.returncode == 0, result.stderr
        assert "restored the whole server from " + artifact.name in result.stdout
        assert "row counts of" in result.stdout
        assert server_fingerprints(target, DATABASES) == server_fingerprints(source, DATABASES)
        assert target.psql("SELECT rolname FROM pg_roles WHERE rolname = 'app_user'") == "app_user"

    def test_full_restore_checks_the_postgres_database(self, postgres_factory, tmp_path):
        """A server whose data is in the postgres database: `restore full` into an empty server checks its
        tables and row counts against the manifest like any other database's (a wrong count fails it)."""
        source = postgres_factory(databases=())
        source.psql("CREATE TABLE notes (a int); INSERT INTO notes VALUES (1), (2), (3);"
                    "CREATE SCHEMA app; CREATE TABLE app.events (id int PRIMARY KEY, at timestamptz);"
                    "INSERT INTO app.events SELECT g, now() FROM generate_series(1, 1000) g;")
        (artifact,) = backup(exec_env(source, tmp_path), "full")
        assert manifest_of(artifact)["row_counts"]["postgres"] == {"public.notes": 3, "app.events": 1000}

        target = postgres_factory(databases=())
        result = restore(exec_env(target, tmp_path), "full", "--from", str(artifact), "--yes")
        assert result.returncode == 0, result.stderr
        assert "(2 tables present, row counts of 2 tables match the manifest)" in result.stdout
        assert table_fingerprints(target, "postgres") == table_fingerprints(source, "postgres")

        miscounted = forge(artifact, "backup_all_miscounted.sql.gz", artifact.read_bytes())
        set_row_count(miscounted, "postgres", "app.events", 999)
        result = restore(exec_env(postgres_factory(databases=()), tmp_path), "full", "--from", str(miscounted),
                         "--yes")
        assert result.returncode == 1
        assert "row counts differ after restoring 'postgres': app.events: 1000 rows, manifest 999" in result.stderr

    def test_full_restore_keeps_the_connecting_roles_password(self, source, postgres_factory, tmp_path):
        """A full restore over TCP onto a server whose superuser has another password completes, and
        the connecting role keeps the target's password (pgbackup still logs in afterwards) while
        every other role gets its password from the backup."""
        (artifact,) = backup(tcp_env(source, tmp_path), "full")
        target = postgres_factory(databases=(), password="another-secret")
        result = restore(tcp_env(target, tmp_path), "full", "--from", str(artifact), "--yes")
        assert result.returncode == 0, result.stderr
        assert "role 'postgres' (the one pgbackup connects as) keeps its current password" in result.stdout
        assert server_fingerprints(target, DATABASES) == server_fingerprints(source, DATABASES)

        def logs_in(role: str, password: str) -> bool:
            exit_code, _ = target.container.exec_run(
                ["psql", "-h", "127.0.0.1", "-U", role, "-d", "authdb", "-Atc", "SELECT 1"],
                environment={"PGPASSWORD": password},
            )
            return exit_code == 0

        assert logs_in("postgres", "another-secret") and not logs_in("postgres", source.password)
        assert logs_in("app_user", "app-password")
        after = pgbackup("backup", "full", env=tcp_env(target, tmp_path / "after"))
        assert after.returncode == 0, after.stderr

    def test_a_restore_waits_for_a_running_backup(self, source, tmp_path):
        """`pgbackup restore` takes the backup lock: while a backup run holds it the restore waits (and says
        so) without touching the database, and it restores once the lock is free."""
        env = exec_env(source, tmp_path)
        (artifact,) = backup(env, "database", "authdb")
        source.psql("DELETE FROM sessions", db="authdb")
        damaged = table_fingerprints(source, "authdb")
        waiting = None
        try:
            with backup_lock(tmp_path, {"run_id": "test", "kind": "full", "since": "now"}):
                waiting = subprocess.Popen(
                    [sys.executable, "-m", "daemon", "restore", "database", "authdb", "--from", str(artifact), "--yes"],
                    env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    stdin=subprocess.DEVNULL,
                )
                time.sleep(4)
                assert waiting.poll() is None
                assert table_fingerprints(source, "authdb") == damaged
            _, stderr = waiting.communicate(timeout=300)
        finally:
            if waiting is not None and waiting.poll() is None:
                waiting.kill()
        assert waiting.returncode == 0, stderr
        assert "pgbackup: waiting for full to finish" in stderr
        assert table_fingerprints(source, "authdb") != damaged
        assert source.psql("SELECT count(*) FROM sessions", db="authdb") == "3000"

    @pytest.mark.parametrize(("method", "backup_format"), [(exec_env, "custom"), (tcp_env, "directory")],
                             ids=["exec-custom", "tcp-directory"])
    def test_restore_from_a_read_only_backup_directory(self, source, tmp_path, method, backup_format):
        """BACKUP_DIR mounted read-only (backups copied to another host, say): the restore reads it
        and restores; nothing is written there. A directory-format dump restored by a local
        pg_restore is unpacked elsewhere (the system's temporary directory)."""
        (artifact,) = backup(method(source, tmp_path / "rw", BACKUP_FORMAT=backup_format), "database", "authdb")
        original = table_fingerprints(source, "authdb")
        source.psql("DELETE FROM sessions", db="authdb")
        before = sorted(p.name for p in (tmp_path / "rw").iterdir())
        with read_only_mount(tmp_path / "rw", tmp_path / "ro") as ro:
            result = restore(method(source, ro, TMPDIR=str(tmp_path)), "database", "authdb", "--latest", "--yes")
        assert result.returncode == 0, result.stderr
        assert table_fingerprints(source, "authdb") == original
        assert sorted(p.name for p in (tmp_path / "rw").iterdir()) == before and artifact.name in before
        assert not list(tmp_path.glob(".pgbackup-restore-*")), "the unpacked dump was left behind"

    def test_a_backup_of_another_database_is_refused(self, source, tmp_path):
        """`restore database authdb --from <apidb's dump>` names the mix-up and changes nothing; the same
        for a table."""
        env = exec_env(source, tmp_path)
        (apidb_dump,) = backup(env, "database", "apidb")
        before = table_fingerprints(source, "authdb")
        for args in (("database", "authdb"), ("table", "authdb", "sessions")):
            result = restore(env, *args, "--from", str(apidb_dump), "--yes")
            assert result.returncode == 1
            assert f"{apidb_dump.name} is a backup of database 'apidb', not 'authdb'" in result.stderr
        assert table_fingerprints(source, "authdb") == before

    def test_a_target_that_cannot_be_dropped_stays_and_the_copy_goes(self, source, tmp_path):
        """authdb marked as a template database cannot be dropped: the restore fails saying so, authdb is as
        it was and no staging database is left behind."""
        env = exec_env(source, tmp_path)
        backup(env, "database", "authdb")
        source.psql("DELETE FROM sessions WHERE id > 10", db="authdb")
        damaged = table_fingerprints(source, "authdb")
        source.psql("ALTER DATABASE authdb IS_TEMPLATE true")
        try:
            result = restore(env, "database", "authdb", "--latest", "--yes")
        finally:
            source.psql("ALTER DATABASE authdb IS_TEMPLATE false")
        assert result.returncode == 1
        assert "could not drop 'authdb' to put the restored copy in its place" in result.stderr
        assert "'authdb' was left as it was" in result.stderr
        assert table_fingerprints(source, "authdb") == damaged
        assert not [db for db in database_names(source) if db.startswith("pgbackup_restore_")]

    def test_database_restore_replaces_a_damaged_database(self, source, tmp_path):
        """`restore database authdb --latest --yes` drops the damaged database and brings back every table,
        from custom (docker exec), plain and directory (TCP) dumps."""
        original = table_fingerprints(source, "authdb")
        for method, dump_format in (("docker_exec", "custom"), ("tcp", "plain"), ("tcp", "directory")):
            directory = tmp_path / dump_format
            env = (exec_env if method == "docker_exec" else tcp_env)(source, directory, BACKUP_FORMAT=dump_format)
            backup(env, "database", "authdb")
            source.psql("DELETE FROM sessions WHERE id % 3 = 0; UPDATE users SET email = 'x' || id; "
                        "CREATE TABLE junk (a int)", db="authdb")

            refused = restore(env, "database", "authdb", "--latest")
            assert refused.returncode == 2
            assert "drop database 'authdb'" in refused.stderr and "--yes" in refused.stderr
            assert table_fingerprints(source, "authdb") != original

            result = restore(env, "database", "authdb", "--latest", "--yes")
            assert result.returncode == 0, result.stderr
            assert table_fingerprints(source, "authdb") == original
        assert not [db for db in database_names(source) if db.startswith("pgbackup_restore_")]


class TestDeletedRows:
    """Runbook scenario 2: rows were deleted; restore the backup from before into authdb_temp and copy them back."""

    def test_rows_come_back_through_a_temporary_database(self, source, tmp_path):
        """--before picks the backup before the deletion; recover-rows inserts only the missing rows; temp dropped."""
        env = exec_env(source, tmp_path, TZ="Europe/Berlin")
        backup(env, "database", "authdb")
        original = table_fingerprints(source, "authdb")
        time.sleep(1.1)
        source.psql("DELETE FROM sessions WHERE id BETWEEN 100 AND 199", db="authdb")
        deletion = datetime.now(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M:%S")
        source.psql("UPDATE sessions SET note = 'changed later' WHERE id = 1", db="authdb")
        time.sleep(1.1)
        backup(env, "database", "authdb")  # taken after the deletion: must not be chosen

        result = restore(env, "database", "authdb", "--before", deletion, "--into", "authdb_temp")
        assert result.returncode == 0, result.stderr
        assert source.psql("SELECT count(*) FROM sessions WHERE id BETWEEN 100 AND 199", db="authdb_temp") == "100"

        # A --where that fails part-way (division by zero at id 150, after rows 100-149 were sent):
        # the command fails and not one row is inserted.
        failing = pgbackup("recover-rows", "authdb", "sessions", "--from", "authdb_temp",
                           "--where", "1 / (id - 150) >= 0", "--yes", env=env)
        assert failing.returncode == 1 and "division by zero" in failing.stderr
        assert source.psql("SELECT count(*) FROM sessions WHERE id BETWEEN 100 AND 199", db="authdb") == "0"

        recovered = pgbackup("recover-rows", "authdb", "sessions", "--from", "authdb_temp", "--drop-source",
                             "--yes", env=env)
        assert recovered.returncode == 0, recovered.stderr
        assert "recovered 100 rows" in recovered.stdout
        assert "authdb_temp" not in database_names(source)
        assert source.psql("SELECT note FROM sessions WHERE id = 1", db="authdb") == "changed later"
        source.psql("UPDATE sessions SET note = 'line1' || chr(10) || 'line2 1' WHERE id = 1", db="authdb")
        assert table_fingerprints(source, "authdb") == original


    def test_rows_are_copied_by_column_name(self, postgres_factory, tmp_path):
        """A migration dropped and re-added a column, so the live table's column order differs from the
        restored copy's; recover-rows puts each value in its own column, and an identity column
        (GENERATED ALWAYS) gets the recovered rows' own ids."""
        server = postgres_factory(databases=("shop",))
        server.psql("CREATE TABLE items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, a text, b text, "
                    "n int GENERATED ALWAYS AS (length(b)) STORED);"
                    "INSERT INTO items (a, b) SELECT 'a' || g, 'b' || g FROM generate_series(1, 20) g", db="shop")
        env = exec_env(server, tmp_path)
        backup(env, "database", "shop")
        server.psql("DELETE FROM items WHERE id > 15; ALTER TABLE items DROP COLUMN a; ALTER TABLE items ADD COLUMN a text",
                    db="shop")
        restored = restore(env, "database", "shop", "--latest", "--into", "shop_temp")
        assert restored.returncode == 0, restored.stderr

        recovered = pgbackup("recover-rows", "shop", "items", "--from", "shop_temp", "--drop-source", "--yes", env=env)
        assert recovered.returncode == 0, recovered.stderr
        assert "recovered 5 rows" in recovered.stdout
        assert server.psql("SELECT string_agg(id || ':' || a || ':' || b || ':' || n, ',' ORDER BY id) FROM items "
                           "WHERE id > 15", db="shop") == "16:a16:b16:3,17:a17:b17:3,18:a18:b18:3,19:a19:b19:3,20:a20:b20:3"


class TestFailedMigration:
    """Runbook scenario 3: a migration failed; restore the pre-migration backup."""

    def test_pre_migration_backup_rolls_everything_back(self, source, tmp_path):
        """Without --force a server with databases is refused unchanged; `restore full --from <pre-migration file>
        --force --yes` puts every database back as it was."""
        env = exec_env(source, tmp_path)
        (artifact,) = backup(env, "pre-migration")
        original = server_fingerprints(source, DATABASES)
        source.psql("ALTER TABLE users DROP COLUMN tags; UPDATE users SET balance = 0; CREATE TABLE v2 (a int)",
                    db="authdb")
        source.psql("DROP TABLE documents", db="admindb")

        listing = pgbackup("list", env=env)
        assert artifact.name in listing.stdout and "kept forever" in listing.stdout
        refused = restore(env, "full", "--from", str(artifact), "--yes")
        assert refused.returncode == 1
        assert "already has databases" in refused.stderr and "--force" in refused.stderr
        assert "v2" in source.psql("SELECT tablename FROM pg_tables", db="authdb")

        result = restore(env, "full", "--from", str(artifact), "--force", "--yes")
        assert result.returncode == 0, result.stderr
        assert "drop database 'authdb'" in result.stderr
        assert server_fingerprints(source, DATABASES) == original


    def test_objects_in_postgres_are_refused_before_anything_is_dropped(self, source, tmp_path):
        """A table of its own in the postgres database (the backup has it too): `restore full --force` names
        it and drops nothing; once it is gone, the restore brings back every database and the backup's copy.
        An extension in template1 (as images like PostGIS's install) is no obstacle."""
        env = exec_env(source, tmp_path)
        source.psql("CREATE TABLE notes (a int); INSERT INTO notes VALUES (1), (2)")
        source.psql("CREATE EXTENSION pg_trgm", db="template1")
        (artifact,) = backup(env, "pre-migration")
        original = server_fingerprints(source, DATABASES)
        source.psql("INSERT INTO notes VALUES (3)")
        source.psql("DROP TABLE documents", db="admindb")
        damaged = server_fingerprints(source, DATABASES)

        refused = restore(env, "full", "--from", str(artifact), "--force", "--yes")
        assert refused.returncode == 1
        assert "nothing was changed: 'postgres' has table notes" in refused.stderr
        assert server_fingerprints(source, DATABASES) == damaged

        source.psql("DROP TABLE notes")
        result = restore(env, "full", "--from", str(artifact), "--force", "--yes")
        assert result.returncode == 0, result.stderr
        assert server_fingerprints(source, DATABASES) == original
        assert source.psql("SELECT string_agg(a::text, ',' ORDER BY a) FROM notes") == "1,2"


    def test_rollback_over_a_server_with_the_backups_tablespace(self, source, tmp_path):
        """A tablespace the server already has (the backup's own, on a rollback): its CREATE TABLESPACE is
        skipped like an existing role's CREATE ROLE, with a note, and the rollback completes."""
        source.container.exec_run(["sh", "-c", "mkdir -p /var/lib/postgresql/ts && chown postgres /var/lib/postgresql/ts"])
        source.psql("CREATE TABLESPACE fastspace LOCATION '/var/lib/postgresql/ts'")
        source.psql("CREATE TABLE spaced (a int) TABLESPACE fastspace; INSERT INTO spaced VALUES (1), (2)", db="authdb")
        env = exec_env(source, tmp_path)
        (artifact,) = backup(env, "pre-migration")
        original = server_fingerprints(source, DATABASES)
        source.psql("DELETE FROM spaced; DROP TABLE users CASCADE", db="authdb")

        result = restore(env, "full", "--from", str(artifact), "--force", "--yes")
        assert result.returncode == 0, result.stderr
        assert "tablespace 'fastspace' exists already" in result.stdout + result.stderr
        assert server_fingerprints(source, DATABASES) == original
        assert source.psql("SELECT spcname FROM pg_tables t JOIN pg_tablespace s ON s.spcname = t.tablespace "
                           "WHERE tablename = 'spaced'", db="authdb") == "fastspace"


def with_error_in(dump: bytes, database: str, after: bytes) -> bytes:
    """``dump`` (pg_dumpall output) with a failing statement in ``database``'s section, after the
    first ``after`` there: a pause first, so the other databases' loads are under way or done."""
    start = dump.index(b"\n\\connect " + database.encode() + b"\n")
    position = dump.index(after, start) + len(after)
    return dump[:position] + b"SELECT pg_sleep(3);\nSELECT 1/0;\n" + dump[position:]


def load_events(stderr: str) -> dict[str, dict[str, datetime]]:
    """When each database's load started and finished, from the restore's log lines."""
    events: dict[str, dict[str, datetime]] = {}
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("event") in ("database_load_started", "database_load_finished"):
            events.setdefault(event["database"], {})[event["event"]] = datetime.fromisoformat(event["timestamp"])
    return events


class TestParallelFullRestore:
    """`restore full` loads each database into a staging database, RESTORE_JOBS at a time, and
    swaps them in only once every one has loaded and matched its row counts."""

    @pytest.mark.parametrize(("broken", "after"), [("apidb", b"\n\\.\n"), ("postgres", b"SET row_security = off;\n")])
    def test_a_failure_in_one_database_leaves_the_server_as_it_was(self, source, tmp_path, broken, after):
        """A full backup whose section of one database stops at an error (a user database half-way
        through its data, or postgres): `restore full --force` fails naming it, and every database has
        the same tables and rows as before, with no staging database left."""
        env = exec_env(source, tmp_path, RESTORE_JOBS="2")
        (artifact,) = backup(env, "full")
        source.psql("DROP TABLE documents", db="admindb")
        source.psql("UPDATE users SET balance = 0", db="authdb")
        compared = [*DATABASES, "postgres", "template1"]
        before, names_before = server_fingerprints(source, compared), database_names(source)

        dump = with_error_in(gzip.decompress(artifact.read_bytes()), broken, after)
        damaged = forge(artifact, "backup_all_with_an_error.sql.gz", gzip.compress(dump))
        result = restore(env, "full", "--from", str(damaged), "--force", "--yes")
        assert result.returncode == 1
        assert "division by zero" in result.stderr and f"{broken!r}" in result.stderr, result.stderr
        assert "The server's databases were not touched" in result.stderr
        assert server_fingerprints(source, compared) == before
        assert database_names(source) == names_before

    @pytest.mark.parametrize("jobs", [2, 1])
    def test_databases_load_side_by_side(self, source, postgres_factory, tmp_path, jobs):
        """With RESTORE_JOBS=2 the databases' loads overlap (the second starts before the first ends);
        with 1 they run one after another. Either way every table comes back."""
        (artifact,) = backup(exec_env(source, tmp_path), "full")
        target = postgres_factory(databases=())
        result = restore(exec_env(target, tmp_path, RESTORE_JOBS=str(jobs)), "full", "--from", str(artifact), "--yes")
        assert result.returncode == 0, result.stderr
        loads = load_events(result.stderr)
        assert set(DATABASES) <= set(loads), result.stderr
        spans = sorted((loads[db]["database_load_started"], loads[db]["database_load_finished"]) for db in DATABASES)
        overlapping = any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))
        assert overlapping is (jobs == 2), spans
        assert server_fingerprints(target, DATABASES) == server_fingerprints(source, DATABASES)
        assert not [db for db in database_names(target) if db.startswith("pgbackup_restore_")]


class TestBrokenArtifacts:
    """A broken artifact makes restore and verify fail loudly and leaves the target as it was."""

    def test_broken_artifacts_fail_loudly_and_change_nothing(self, source, tmp_path, postgres_image):
        """A file cut short, a cut gzip with a matching manifest and an SQL error halfway each make restore and
        verify fail with the reason, and authdb stays as it was."""
        env = exec_env(source, tmp_path, BACKUP_FORMAT="plain", RESTORE_TEST_IMAGE=postgres_image)
        (artifact,) = backup(env, "database", "authdb")
        data = artifact.read_bytes()
        cut = forge(artifact, "authdb_cut.sql.gz", data[: len(data) * 2 // 3])
        sql = gzip.decompress(data)
        middle = sql.index(b"COPY public.users")
        bad = forge(artifact, "authdb_broken.sql.gz",
                    gzip.compress(sql[:middle] + b"SELECT * FROM no_such_table_here;\n" + sql[middle:]))
        artifact.write_bytes(data[: len(data) // 2])
        source.psql("DELETE FROM sessions WHERE id > 10", db="authdb")
        damaged = table_fingerprints(source, "authdb")

        for path, reason in ((artifact, "the file is damaged"), (cut, "truncated"), (bad, "no_such_table_here")):
            result = restore(env, "database", "authdb", "--from", str(path), "--yes")
            assert result.returncode == 1, path.name
            assert reason in result.stderr, result.stderr
            assert table_fingerprints(source, "authdb") == damaged
        assert not [db for db in database_names(source) if db.startswith("pgbackup_restore_")]

        verify = pgbackup("verify", str(bad), env=env)
        assert verify.returncode == 1 and "no_such_table_here" in verify.stdout
        verify = pgbackup("verify", str(artifact), env=env)
        assert verify.returncode == 1 and "FAILED" in verify.stdout

    def test_a_staging_database_with_a_subscription_is_dropped(self, postgres_factory, tmp_path):
        """A database with a logical replication subscription, restored from a plain dump whose manifest
        counts a row too many: the check fails and the staging copy, subscription and all, is dropped
        (DROP DATABASE refuses a database with a subscription); the original subscription stays. When
        the copy cannot be dropped (an event trigger refuses to change its subscription), the error
        names it instead of saying that nothing was created."""
        server = postgres_factory(databases=("shop",))
        server.psql("CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 30);"
                    "CREATE SUBSCRIPTION shop_feed CONNECTION 'dbname=nowhere' PUBLICATION feed "
                    "WITH (connect = false, enabled = false, create_slot = false, slot_name = NONE)", db="shop")
        env = exec_env(server, tmp_path, BACKUP_FORMAT="plain")
        (artifact,) = backup(env, "database", "shop")
        sql = gzip.decompress(artifact.read_bytes())
        assert b"CREATE SUBSCRIPTION shop_feed" in sql
        miscounted = forge(artifact, "shop_miscounted.sql.gz", artifact.read_bytes())
        set_row_count(miscounted, "shop", "public.items", 31)

        result = restore(env, "database", "shop", "--from", str(miscounted), "--into", "shop_copy", "--yes")
        assert result.returncode == 1
        assert "row counts differ" in result.stderr and "Nothing was created" in result.stderr
        assert not [db for db in database_names(server) if db.startswith("pgbackup_restore_")]
        assert "shop_copy" not in database_names(server)
        assert server.psql("SELECT s.subname || ' ' || d.datname FROM pg_subscription s "
                           "JOIN pg_database d ON d.oid = s.subdbid") == "shop_feed shop"

        # An event trigger that refuses changes to subscriptions comes along into the staging copy,
        # whose subscription then cannot be detached, so the copy cannot be dropped.
        server.psql("CREATE FUNCTION refuse() RETURNS event_trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'subscriptions are frozen'; END $$;"
                    "CREATE EVENT TRIGGER frozen ON ddl_command_start "
                    "WHEN TAG IN ('ALTER SUBSCRIPTION', 'DROP SUBSCRIPTION') EXECUTE FUNCTION refuse()", db="shop")
        (frozen,) = backup(env, "database", "shop")
        set_row_count(frozen, "shop", "public.items", 31)
        result = restore(env, "database", "shop", "--from", str(frozen), "--into", "shop_copy", "--yes")
        assert result.returncode == 1
        (left,) = [db for db in database_names(server) if db.startswith("pgbackup_restore_")]
        assert f"The staging database {left!r} could not be dropped" in result.stderr, result.stderr
        assert "Nothing was created" not in result.stderr


class TestNamesAndTables:
    """Any database name works, and single tables come back."""

    NAMES = ("it's \"quoted\"", "spaced name", "Ünïcödé-db")

    def test_database_properties_come_back(self, postgres_factory, tmp_path):
        """A database's encoding, locale, owner, connection limit, settings (its own and a role's in it),
        comment (of two lines) and privileges are the same after `restore database` from its custom dump and from a
        full backup as before (pg_restore into a new database does not restore them by itself)."""
        server = postgres_factory(databases=())
        server.psql("CREATE ROLE db_owner; CREATE ROLE app_x LOGIN;"
                    "CREATE DATABASE latindb TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                    "OWNER db_owner CONNECTION LIMIT 40;"
                    "COMMENT ON DATABASE latindb IS E'legacy\\ndata'; ALTER DATABASE latindb SET work_mem TO '8MB';"
                    "ALTER ROLE app_x IN DATABASE latindb SET search_path TO 'public';"
                    "REVOKE ALL ON DATABASE latindb FROM PUBLIC; GRANT CONNECT ON DATABASE latindb TO app_x;")
        server.psql("CREATE TABLE t (a text); INSERT INTO t VALUES ('café'), ('naïve');", db="latindb")
        # A function whose body has lines that read like the database's own statements: they
        # are part of the function, not statements about the restored database.
        server.psql("CREATE FUNCTION retune() RETURNS void LANGUAGE sql AS $body$\n"
                    "ALTER DATABASE latindb SET work_mem TO '16MB';\n"
                    "GRANT CONNECT ON DATABASE latindb TO db_owner;\n"
                    "$body$;", db="latindb")
        function_source = server.psql("SELECT prosrc FROM pg_proc WHERE proname = 'retune'", db="latindb")
        assert "ALTER DATABASE latindb SET" in function_source
        env = exec_env(server, tmp_path)
        dump = next(p for p in backup(env, "databases") if p.name.startswith("latindb_"))
        (full,) = backup(env, "full")

        def properties() -> str:
            return server.psql(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype, pg_get_userbyid(datdba), datconnlimit, "
                "shobj_description(oid, 'pg_database'), datacl::text FROM pg_database WHERE datname = 'latindb';"
                "SELECT coalesce(r.rolname, '-'), s.setconfig::text FROM pg_db_role_setting s "
                "JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole "
                "WHERE d.datname = 'latindb' ORDER BY 1;")

        before = properties()
        assert "LATIN1|C|C|db_owner|40|legacy\ndata|" in before and "app_x|{search_path=public}" in before
        rows = server.psql("SELECT string_agg(a, ',' ORDER BY a) FROM t", db="latindb")
        for artifact in (dump, full):
            server.psql("DROP DATABASE latindb;")
            result = restore(env, "database", "latindb", "--from", str(artifact), "--yes")
            assert result.returncode == 0, result.stderr
            assert properties() == before, artifact.name
            assert server.psql("SELECT string_agg(a, ',' ORDER BY a) FROM t", db="latindb") == rows == "café,naïve"
            assert server.psql("SELECT prosrc FROM pg_proc WHERE proname = 'retune'", db="latindb") == function_source

        # A locale the server does not have: a clear error, and the database is left as it was.
        sql = gzip.decompress(full.read_bytes())
        assert b"ENCODING = 'LATIN1' LOCALE_PROVIDER = libc LOCALE = 'C';" in sql
        alien = forge(full, "backup_all_alien_locale.sql.gz", gzip.compress(
            sql.replace(b"LOCALE = 'C';", b"LOCALE = 'xx_XX.nowhere';", 1)))
        result = restore(env, "database", "latindb", "--from", str(alien), "--yes")
        assert result.returncode == 1
        assert "could not create a database as the backup does" in result.stderr and "xx_XX.nowhere" in result.stderr
        assert properties() == before
        assert not [db for db in database_names(server) if db.startswith("pgbackup_restore_")]

    def test_awkward_database_names(self, postgres_factory, tmp_path):
        """Names with quotes, spaces and non-ASCII restore from a full backup and from their own dumps."""
        server = postgres_factory(databases=self.NAMES)
        for number, name in enumerate(self.NAMES):
            server.psql(f"CREATE TABLE \"t {number}\" (id int PRIMARY KEY, v text); "
                        f"INSERT INTO \"t {number}\" SELECT g, 'ü' || g FROM generate_series(1, {10 + number}) g",
                        db=name)
        env = exec_env(server, tmp_path)
        backup(env, "full")
        backup(env, "databases")
        original = server_fingerprints(server, self.NAMES)

        into = "copy of \"it's\" ü"
        extracted = restore(env, "database", self.NAMES[0], "--latest", "--into", into)
        assert extracted.returncode == 0, extracted.stderr
        assert table_fingerprints(server, into) == original[self.NAMES[0]]
        for name in self.NAMES:
            server.psql(f"DELETE FROM \"t {self.NAMES.index(name)}\"", db=name)
            result = restore(env, "database", name, "--latest", "--yes")
            assert result.returncode == 0, result.stderr
        assert server_fingerprints(server, self.NAMES) == original

    def test_partitions_and_names_with_newlines(self, postgres_factory, tmp_path):
        """A database with a partitioned table (a range partition and a default one) and tables whose names
        pg_restore --list prints alike (a newline and a space) comes back with `restore database --into` from
        its custom dump, its plain dump and a full backup, and `verify` passes its custom dump."""
        server = postgres_factory(databases=("shop",))
        server.psql(
            "CREATE TABLE m (id int, d date) PARTITION BY RANGE (d);"
            "CREATE TABLE m1 PARTITION OF m FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
            "CREATE TABLE m_rest PARTITION OF m DEFAULT;"
            "INSERT INTO m SELECT g, date '2026-06-01' + g FROM generate_series(1, 400) g;"
            'CREATE TABLE "line\nbreak" (id int); INSERT INTO "line\nbreak" SELECT generate_series(1, 7);'
            'CREATE TABLE "line break" (id int); INSERT INTO "line break" VALUES (1);', db="shop")
        shape = ("SELECT (SELECT count(*) || '/' || sum(id) FROM m) || ' ' || (SELECT count(*) FROM m1) || ' ' || "
                 "(SELECT count(*) FROM m_rest) || ' ' || (SELECT count(*) FROM \"line\nbreak\") || ' ' || "
                 "(SELECT count(*) FROM \"line break\") || ' ' || "
                 "(SELECT string_agg(inhrelid::regclass::text, ',' ORDER BY 1) FROM pg_inherits)")
        original = server.psql(shape, db="shop")
        assert original == "400/80200 213 187 7 1 m1,m_rest"

        custom = backup(exec_env(server, tmp_path), "database", "shop")[0]
        plain = backup(exec_env(server, tmp_path, BACKUP_FORMAT="plain"), "database", "shop")[0]
        full = backup(exec_env(server, tmp_path), "full")[0]
        assert manifest_of(plain)["row_counts"]["shop"]['public."line\nbreak"'] == 7
        assert manifest_of(full)["row_counts"]["shop"]['public."line\nbreak"'] == 7
        for number, artifact in enumerate((custom, plain, full)):
            into = f"shop_copy_{number}"
            result = restore(exec_env(server, tmp_path), "database", "shop", "--from", str(artifact), "--into", into,
                             "--yes")
            assert result.returncode == 0, f"{artifact.name}: {result.stderr}"
            assert server.psql(shape, db=into) == original, artifact.name
        verify = pgbackup("verify", str(custom), env=exec_env(server, tmp_path))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "restored into a throwaway container" in verify.stdout

    def test_table_restore(self, source, tmp_path):
        """`restore table` replaces one table's rows in one transaction or copies it into another database; a table
        that others reference is refused inside the transaction, its rows unchanged."""
        env = exec_env(source, tmp_path)
        backup(env, "database", "apidb")
        original = table_fingerprints(source, "apidb")
        source.psql('DELETE FROM api.requests WHERE id > 100; DELETE FROM "Odd Table ""quoted"""', db="apidb")

        for table in ("api.requests", 'Odd Table "quoted"'):
            result = restore(env, "table", "apidb", table, "--latest", "--yes")
            assert result.returncode == 0, result.stderr
        assert table_fingerprints(source, "apidb") == original

        # A table the backup does not have, though one of its tables has a name that starts the same:
        # refused, its rows untouched.
        source.psql("CREATE TABLE \"Odd\" (a int); INSERT INTO \"Odd\" VALUES (1), (2)", db="apidb")
        unknown = restore(env, "table", "apidb", "Odd", "--latest", "--yes")
        assert unknown.returncode == 1 and "has no table public.Odd" in unknown.stderr
        assert source.psql('SELECT count(*) FROM "Odd"', db="apidb") == "2"
        source.psql('DROP TABLE "Odd"', db="apidb")

        copied = restore(env, "table", "apidb", "api.requests", "--latest", "--into", "apidb_tables")
        assert copied.returncode == 0, copied.stderr
        assert table_fingerprints(source, "apidb_tables") == {"api.requests": original["api.requests"]}

        source.psql("DELETE FROM sessions WHERE id > 5", db="authdb")
        before = table_fingerprints(source, "authdb")
        backup(env, "database", "authdb")
        refused = restore(env, "table", "authdb", "users", "--latest", "--yes")
        assert refused.returncode == 1 and "foreign key" in refused.stderr
        assert table_fingerprints(source, "authdb") == before


    def test_table_restore_of_a_partitioned_table(self, source, tmp_path):
        """`restore table` of a partitioned table (its rows are its partitions') empties every partition
        and loads each partition's rows from the backup in one transaction, the partitions' triggers held
        off; rows in a partition made after the backup go, as later rows of any table do. --into is
        refused with the way to get the table."""
        source.psql(
            "CREATE TABLE api.events (id int, at date) PARTITION BY RANGE (at);"
            "CREATE TABLE api.events_2026 PARTITION OF api.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
            "CREATE TABLE api.events_2027 PARTITION OF api.events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');"
            "INSERT INTO api.events SELECT g, date '2026-06-01' + g % 400 FROM generate_series(1, 1000) g", db="apidb")
        shape = "SELECT tableoid::regclass, count(*), sum(id) FROM api.events GROUP BY 1 ORDER BY 1"
        original = source.psql(shape, db="apidb")
        env = exec_env(source, tmp_path)
        backup(env, "database", "apidb")
        source.psql(
            "DELETE FROM api.events WHERE id < 300;"
            "CREATE TABLE api.events_2028 PARTITION OF api.events FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');"
            "INSERT INTO api.events VALUES (5000, '2028-02-02');"
            "CREATE FUNCTION api.negate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.id := -NEW.id; "
            "RETURN NEW; END $$;"
            "CREATE TRIGGER negate BEFORE INSERT ON api.events FOR EACH ROW EXECUTE FUNCTION api.negate()", db="apidb")

        result = restore(env, "table", "apidb", "api.events", "--latest", "--yes")
        assert result.returncode == 0, result.stderr
        assert "api.events_2026, api.events_2027" in result.stdout + result.stderr
        assert source.psql(shape, db="apidb") == original
        enabled = "SELECT count(*) FROM pg_trigger WHERE tgname = 'negate' AND tgenabled = 'O'"
        assert source.psql(enabled, db="apidb") == "4"  # the parent's and each partition's clone

        copied = restore(env, "table", "apidb", "api.events", "--latest", "--into", "apidb_events")
        assert copied.returncode == 1 and "partitioned table" in copied.stderr and "--into" in copied.stderr
        assert "apidb_events" not in database_names(source)


    def test_table_restore_of_a_table_other_tables_reference_is_refused_with_the_way(self, source, tmp_path):
        """`restore table` of a table that another table's foreign key points at is refused before anything
        changes, naming the referencing table and what to do instead (a TRUNCATE would have to empty it too)."""
        source.psql("CREATE TABLE api.owners (id int PRIMARY KEY); INSERT INTO api.owners VALUES (1), (2);"
                    "CREATE TABLE api.pets (id int, owner int REFERENCES api.owners); INSERT INTO api.pets VALUES "
                    "(10, 1)", db="apidb")
        env = exec_env(source, tmp_path)
        backup(env, "database", "apidb")
        source.psql("DELETE FROM api.owners WHERE id = 2", db="apidb")

        refused = restore(env, "table", "apidb", "api.owners", "--latest", "--yes")
        assert refused.returncode == 1, refused.stderr
        assert "referenced by foreign keys of api.pets" in refused.stderr and "recover-rows" in refused.stderr
        assert source.psql("SELECT count(*) FROM api.owners", db="apidb") == "1"
        assert source.psql("SELECT count(*) FROM api.pets", db="apidb") == "1"


class TestFromS3:
    """A backup that is only in S3 is downloaded, checked and restored."""

    def test_restore_downloads_an_offsite_only_backup(self, source, tmp_path, s3_server):
        """With the local file gone, `restore database --latest` fetches the S3 copy (checksum checked) and restores it."""
        env = exec_env(source, tmp_path, S3_ENDPOINT_URL=s3_server.endpoint_url, S3_BUCKET=s3_server.bucket,
                       AWS_ACCESS_KEY_ID=s3_server.access_key, AWS_SECRET_ACCESS_KEY=s3_server.secret_key)
        (artifact,) = backup(env, "database", "authdb")
        original = table_fingerprints(source, "authdb")
        manifest_file = artifact.with_name(artifact.name + ".manifest.json")
        artifact.unlink()
        manifest_file.unlink()
        source.psql("DELETE FROM sessions", db="authdb")

        result = restore(env, "database", "authdb", "--latest", "--yes")
        assert result.returncode == 0, result.stderr
        assert table_fingerprints(source, "authdb") == original
        assert artifact.exists() and manifest_file.exists()


class TestManualFallback:
    """docs/runbook.md's commands for when the sidecar itself is gone (plain psql and pg_restore)."""

    def test_manual_commands_from_the_runbook(self, source, postgres_factory, tmp_path):
        """Each command of the runbook's manual section restores its backup, equal table by table."""
        env = exec_env(source, tmp_path)
        (full,) = backup(env, "full")
        (custom,) = backup(env, "database", "authdb")
        commands = runbook_manual_commands()
        assert set(commands) == {"full", "database", "plain-database"}

        target = postgres_factory(databases=())
        run_shell(commands["full"], PG=target.name, FILE=str(full))
        assert server_fingerprints(target, DATABASES) == server_fingerprints(source, DATABASES)

        target.psql('DROP DATABASE authdb')
        run_shell(commands["database"], PG=target.name, FILE=str(custom), DB="authdb")
        assert table_fingerprints(target, "authdb") == table_fingerprints(source, "authdb")

        (plain,) = backup(exec_env(source, tmp_path, BACKUP_FORMAT="plain"), "database", "apidb")
        target.psql("DROP DATABASE apidb")
        run_shell(commands["plain-database"], PG=target.name, FILE=str(plain), DB="apidb")
        assert table_fingerprints(target, "apidb") == table_fingerprints(source, "apidb")


def runbook_manual_commands() -> dict[str, str]:
    """The shell blocks of the runbook's manual section, by the word after 'manual-'."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "runbook.md").read_text()
    blocks = {}
    for part in text.split("```sh manual-")[1:]:
        name, _, rest = part.partition("\n")
        blocks[name.strip()] = rest.split("```", 1)[0]
    return blocks


def run_shell(script: str, **variables: str) -> None:
    environment = {"PATH": os.environ["PATH"], **variables}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=environment, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr

