"""Point-in-time recovery with ENCRYPT_RECIPIENTS and MANIFEST_SIGNING_KEY_FILE, against a real
PostgreSQL 15 container and Debian's `age` command: a base backup is an age file with a signed
manifest, Debian's age reads it, `verify` needs the identity and checks the whole tar."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from daemon.manifest import read_manifest
from tests.integration.test_encryption import AGE_HEADER, AgeKey, age_binary, new_age_key
from tests.integration.test_wal_streaming import allow_replication
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
