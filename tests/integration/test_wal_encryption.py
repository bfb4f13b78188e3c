"""Point-in-time recovery with ENCRYPT_RECIPIENTS and MANIFEST_SIGNING_KEY_FILE, against a real
PostgreSQL 15 container and Debian's `age` command: a base backup is an age file with a signed
manifest, Debian's age reads it, `verify` needs the identity and checks the whole tar; the WAL
archive is encrypted too, and a point-in-time recovery reads both only with the identity."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from daemon.manifest import read_manifest
from daemon.wal.archive import partial_segment, read_records, wal_dir
from tests.integration.test_daemon import wait_until
from tests.integration.test_encryption import AGE_HEADER, AgeKey, age_binary, new_age_key
from tests.integration.test_wal_streaming import FAR_AWAY, allow_replication, running_daemon
from tests.support import docker_env
from tests.support.pgbackup_cli import exec_env, pgbackup
from tests.support.postgres import start_postgres

SIGNING_KEY = "5ca1ab1e" * 8


@pytest.fixture(scope="module")
def encrypted_source(docker_client, postgres_image):
    server = start_postgres(docker_client, postgres_image, databases=("appdb",))
    try:
        allow_replication(server)
        server.psql("CREATE TABLE ticks (seq int NOT NULL, at timestamptz NOT NULL); "
                    "INSERT INTO ticks SELECT g, clock_timestamp() FROM generate_series(1, 100) AS g", db="appdb")
        yield server
    finally:
        docker_env.remove_container(server.container)


@pytest.fixture(scope="module")
def age_key(tmp_path_factory) -> AgeKey:
    return new_age_key(tmp_path_factory.mktemp("age"))


@pytest.fixture(scope="module")
def encrypted_env(encrypted_source, age_key, tmp_path_factory) -> dict[str, str]:
    """Settings of an install that encrypts and signs; without ENCRYPT_IDENTITY_FILE (it only backs up)."""
    directory = tmp_path_factory.mktemp("wal-encrypted")
    signing_key = directory.parent / f"{directory.name}-signing.key"
    signing_key.write_text(SIGNING_KEY)
    return exec_env(encrypted_source, directory / "backups", POSTGRES_PASSWORD=encrypted_source.password,
                    WAL_STREAMING="on", ENCRYPT_RECIPIENTS=age_key.recipient,
                    MANIFEST_SIGNING_KEY_FILE=str(signing_key))


class TestEncryptedBaseBackup:
    def test_a_base_backup_is_an_age_file_with_a_signed_manifest_and_verify_needs_the_identity(
            self, encrypted_env, age_key):
        """`pgbackup backup base` with ENCRYPT_RECIPIENTS writes base_*.tar.gz.age (no tar header in sight), its
        manifest says age with the recipient's fingerprint and carries a valid signature; Debian's age -d gives
        the gzip tar with backup_label and PG_VERSION; verify without the identity exits 2 naming
        ENCRYPT_IDENTITY_FILE, and with it reads the whole tar."""
        result = pgbackup("backup", "base", env=encrypted_env)
        assert result.returncode == 0, result.stderr
        artifact = Path(result.stdout.strip())
        assert artifact.name.startswith("base_") and artifact.name.endswith(".tar.gz.age"), artifact.name
        stored = artifact.read_bytes()
        assert stored.startswith(AGE_HEADER) and b"backup_label" not in stored

        manifest = read_manifest(artifact.with_name(artifact.name + ".manifest.json"))
        assert manifest.kind == "base" and manifest.encryption == "age" and len(manifest.recipients) == 1
        assert manifest.signature and manifest.signature_problem(SIGNING_KEY.encode()) is None, manifest.signature

        plain = subprocess.run(
            ["bash", "-o", "pipefail", "-c", f'"{age_binary("age")}" -d -i "$1" "$2" | tar -tzf -', "list",
             str(age_key.identity_file), str(artifact)], capture_output=True, text=True, check=False)
        assert plain.returncode == 0, plain.stderr
        assert {"backup_label", "PG_VERSION"} <= set(plain.stdout.split())

        refused = pgbackup("verify", str(artifact), env=encrypted_env)
        assert refused.returncode == 2 and "ENCRYPT_IDENTITY_FILE" in refused.stderr, refused.stderr
        verified = pgbackup("verify", str(artifact), env={**encrypted_env,
                                                          "ENCRYPT_IDENTITY_FILE": str(age_key.identity_file)})
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "a PostgreSQL 15 data directory" in verified.stdout, verified.stdout


class TestEncryptedPointInTimeRecovery:
    def test_encrypted_base_and_wal_recover_every_committed_row_only_with_the_identity(
            self, docker_client, postgres_image, encrypted_source, encrypted_env, age_key, docker_volume_factory,
            tmp_path):
        """WAL_STREAMING with ENCRYPT_RECIPIENTS: archived segments are <name>.gz.age with signed records saying age;
        `restore point-in-time --latest` without ENCRYPT_IDENTITY_FILE exits 2 naming it and writes nothing;
        with it, the encrypted base and WAL recover a volume holding every committed row."""
        backup_dir = Path(encrypted_env["BACKUP_DIR"])
        daemon_env = {**encrypted_env, "SCHEDULE_FULL": FAR_AWAY, "SCHEDULE_DATABASES": FAR_AWAY,
                      "SCHEDULE_RETENTION": FAR_AWAY, "SCHEDULE_BASE": FAR_AWAY, "SCHEDULE_RESTORE_TEST": "off"}
        with running_daemon(daemon_env, tmp_path / "daemon.log"):
            wait_until(lambda: partial_segment(backup_dir) is not None, 60, "the receiver to stream")
            base = pgbackup("backup", "base", env=encrypted_env)
            assert base.returncode == 0, base.stderr
            encrypted_source.psql("INSERT INTO ticks SELECT g, clock_timestamp() FROM generate_series(101, 5000) g",
                                  db="appdb")
            closed = encrypted_source.psql("SELECT pg_walfile_name(pg_switch_wal())")
            wait_until(lambda: closed in {r.name for r in read_records(backup_dir)}, 60, f"segment {closed} archived")
            encrypted_source.psql("INSERT INTO ticks SELECT g, clock_timestamp() FROM generate_series(5001, 5100) g",
                                  db="appdb")  # only in the partial segment
            committed = encrypted_source.psql("SELECT count(*) FROM ticks", db="appdb")
            time.sleep(1.5)

            records = read_records(backup_dir)
            assert records and all(r.encryption == "age" and r.file.endswith(".gz.age") and r.signature
                                   for r in records), records
            assert all((wal_dir(backup_dir) / r.file).read_bytes().startswith(AGE_HEADER) for r in records)

            volume = docker_volume_factory("pgbackup-test-pitr-encrypted")
            command = ("restore", "point-in-time", "--latest", "--volume", volume, "--image", postgres_image)
            refused = pgbackup(*command, env=encrypted_env)
            assert refused.returncode == 2 and "ENCRYPT_IDENTITY_FILE" in refused.stderr, refused.stderr
            recovered = pgbackup(*command, env={**encrypted_env, "ENCRYPT_IDENTITY_FILE": str(age_key.identity_file)})
            assert recovered.returncode == 0, recovered.stderr

        restored = start_postgres(docker_client, postgres_image, databases=(), volume=volume,
                                  password=encrypted_source.password)
        try:
            assert restored.psql("SELECT count(*) FROM ticks", db="appdb") == committed
        finally:
            docker_env.remove_container(restored.container)
