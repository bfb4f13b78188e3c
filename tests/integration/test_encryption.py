"""Encryption at rest with age, against real PostgreSQL, real SeaweedFS and Debian's `age`
command: what the sidecar writes is an age file on disk and in the bucket, restores with
ENCRYPT_IDENTITY_FILE, and decrypts by hand with `age -d`; without the identity, restore and
verify exit 2 naming the variable; a damaged or forged artifact is refused before the server
is touched; with MANIFEST_SIGNING_KEY_FILE, unsigned or badly signed manifests are foreign."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.support import docker_env
from tests.support.docker_env import remove_container
from tests.support.pgbackup_cli import artifact_paths, base_env, exec_env, log_events, pgbackup
from tests.support.postgres import start_postgres
from tests.support.sample_data import seed, server_fingerprints, table_fingerprints

DATABASES = ["authdb", "apidb", "admindb"]
AGE_HEADER = b"age-encryption.org/v1\n"
SQL_MARKERS = (b"CREATE TABLE", b"COPY public.", b"PGDMP", b"CREATE ROLE")


@dataclass(frozen=True)
class AgeKey:
    identity_file: Path
    recipient: str


def age_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"Debian's {name} command is missing (apt-get install age; scripts/test installs it)",
                    pytrace=False)
    return path


def new_age_key(directory: Path) -> AgeKey:
    directory.mkdir(parents=True, exist_ok=True)
    identity_file = directory / "key.txt"
    subprocess.run([age_binary("age-keygen"), "-o", str(identity_file)], check=True, capture_output=True)
    recipient = subprocess.run([age_binary("age-keygen"), "-y", str(identity_file)], check=True,
                               capture_output=True, text=True).stdout.strip()
    return AgeKey(identity_file, recipient)


@pytest.fixture(scope="module")
def age_key(tmp_path_factory) -> AgeKey:
    return new_age_key(tmp_path_factory.mktemp("age"))


@pytest.fixture(scope="module")
def source(docker_client, postgres_image):
    """One seeded server the module's tests back up (and only read)."""
    server = start_postgres(docker_client, postgres_image, databases=tuple(DATABASES), password="secret")
    try:
        seed(server)
        yield server
    finally:
        remove_container(server.container)


def backup(env: dict, *what: str) -> list[Path]:
    result = pgbackup("backup", *what, env=env)
    assert result.returncode == 0, result.stderr
    return artifact_paths(result)


def manifest_of(artifact: Path) -> dict:
    return json.loads(artifact.with_name(artifact.name + ".manifest.json").read_text())


def write_manifest(artifact: Path, manifest: dict) -> None:
    artifact.with_name(artifact.name + ".manifest.json").write_text(json.dumps(manifest))


def fingerprint(recipient: str) -> str:
    return hashlib.sha256(recipient.encode()).hexdigest()[:16]


def age_decrypt(key: AgeKey, path: Path) -> bytes:
    result = subprocess.run([age_binary("age"), "-d", "-i", str(key.identity_file), str(path)], capture_output=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_encrypted(data: bytes) -> None:
    assert data.startswith(AGE_HEADER)
    for marker in SQL_MARKERS:
        assert marker not in data, marker


class TestEncryptedRoundTrip:
    def test_full_and_database_backups_are_age_files_that_restore(self, source, postgres_factory, age_key,
                                                                   s3_server, tmp_path):
        """With ENCRYPT_RECIPIENTS and S3 on, the full and per-database artifacts are *.age files (on disk and
        in the bucket) that hold no SQL; their manifests say age and name the recipient; `restore full` and
        `restore database` with ENCRYPT_IDENTITY_FILE give back every table of the source."""
        env = exec_env(source, tmp_path / "backups", ENCRYPT_RECIPIENTS=age_key.recipient,
                       ENCRYPT_IDENTITY_FILE=str(age_key.identity_file),
                       S3_ENDPOINT_URL=s3_server.endpoint_url, S3_BUCKET=s3_server.bucket,
                       AWS_ACCESS_KEY_ID=s3_server.access_key, AWS_SECRET_ACCESS_KEY=s3_server.secret_key)
        (full,) = backup(env, "full")
        dumps = [path for path in backup(env, "databases") if not path.name.startswith("postgres_")]
        assert full.name.startswith("backup_all_") and full.name.endswith(".sql.gz.age")
        assert sorted(path.name.split("_")[0] for path in dumps) == sorted(DATABASES)
        assert all(path.name.endswith(".dump.age") for path in dumps)
        bucket = s3_server.client()
        for artifact in [full, *dumps]:
            manifest = manifest_of(artifact)
            assert manifest["encryption"] == "age" and manifest["recipients"] == [fingerprint(age_key.recipient)]
            stored = artifact.read_bytes()
            assert_encrypted(stored)
            assert manifest["sha256"] == hashlib.sha256(stored).hexdigest()
            uploaded = bucket.get_object(Bucket=s3_server.bucket, Key=manifest["offsite"]["key"])["Body"].read()
            assert uploaded == stored

        target = postgres_factory(databases=())
        result = pgbackup("restore", "full", "--latest", "--yes", env={**env, **exec_env(target, tmp_path / "backups")})
        assert result.returncode == 0, result.stderr
        assert server_fingerprints(target, DATABASES) == server_fingerprints(source, DATABASES)

        result = pgbackup("restore", "database", "authdb", "--from", str(next(p for p in dumps if "authdb" in p.name)),
                          "--into", "authdb_copy", "--yes", env={**env, **exec_env(target, tmp_path / "backups")})
        assert result.returncode == 0, result.stderr
        assert table_fingerprints(target, "authdb_copy") == table_fingerprints(source, "authdb")

        # Only in S3: downloaded (its sha256 checked on the encrypted bytes), then decrypted and restored.
        authdb_dump = next(p for p in dumps if "authdb" in p.name)
        authdb_dump.unlink()
        authdb_dump.with_name(authdb_dump.name + ".manifest.json").unlink()
        result = pgbackup("restore", "database", "authdb", "--latest", "--into", "authdb_from_s3", "--yes",
                          env={**env, **exec_env(target, tmp_path / "backups")})
        assert result.returncode == 0, result.stderr
        assert authdb_dump.read_bytes().startswith(AGE_HEADER)
        assert table_fingerprints(target, "authdb_from_s3") == table_fingerprints(source, "authdb")

    def test_verify_restores_encrypted_backups_into_a_throwaway_server(self, source, age_key, postgres_image,
                                                                       tmp_path):
        """`pgbackup verify` (the restore test's checks and throwaway restore) with ENCRYPT_IDENTITY_FILE
        decrypts the newest full and database backups, restores them and compares the row counts."""
        env = exec_env(source, tmp_path, ENCRYPT_RECIPIENTS=age_key.recipient, RESTORE_TEST_IMAGE=postgres_image,
                       ENCRYPT_IDENTITY_FILE=str(age_key.identity_file))
        backup(env, "full")
        backup(env, "database", "authdb")
        result = pgbackup("verify", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count(": OK") == 2
        assert result.stdout.count("decrypts completely (age, 1 recipient(s))") == 2
        assert result.stdout.count("restored into a throwaway container") == 2

    def test_debian_age_decrypts_what_the_sidecar_wrote(self, source, age_key, tmp_path):
        """docs/encryption.md's manual restore: `age -d -i key.txt` + gunzip gives pg_dumpall's SQL, and a
        decrypted custom dump is an archive pg_restore lists."""
        env = exec_env(source, tmp_path, ENCRYPT_RECIPIENTS=age_key.recipient)
        (full,) = backup(env, "full")
        sql = gzip.decompress(age_decrypt(age_key, full))
        assert b"CREATE ROLE app_user;" in sql and b"\\connect authdb" in sql
        (dump,) = backup(env, "database", "authdb")
        plain = tmp_path / "authdb.dump"
        plain.write_bytes(age_decrypt(age_key, dump))
        listing = subprocess.run(["pg_restore", "--list", str(plain)], capture_output=True, text=True)
        assert listing.returncode == 0, listing.stderr
        assert "TABLE DATA public users" in listing.stdout

    def test_a_file_age_encrypted_is_restorable(self, source, postgres_factory, age_key, tmp_path):
        """A plain dump encrypted with Debian's `age -r`, with its manifest saying so, restores with the identity."""
        (dump,) = backup(exec_env(source, tmp_path), "database", "authdb")
        encrypted = dump.with_name(dump.name + ".age")
        subprocess.run([age_binary("age"), "-r", age_key.recipient, "-o", str(encrypted), str(dump)], check=True)
        data = encrypted.read_bytes()
        write_manifest(encrypted, {**manifest_of(dump), "file": encrypted.name, "size_bytes": len(data),
                                   "sha256": hashlib.sha256(data).hexdigest(), "encryption": "age"})
        target = postgres_factory(databases=())
        target.psql("CREATE ROLE app_user")  # the dump grants to it; a database dump carries no roles
        env = exec_env(target, tmp_path, ENCRYPT_IDENTITY_FILE=str(age_key.identity_file))
        result = pgbackup("restore", "database", "authdb", "--from", str(encrypted), "--yes", env=env)
        assert result.returncode == 0, result.stderr
        assert table_fingerprints(target, "authdb") == table_fingerprints(source, "authdb")


class TestWithoutTheIdentity:
    def test_restore_and_verify_exit_2_naming_the_variable(self, source, postgres_factory, age_key, tmp_path):
        """Without ENCRYPT_IDENTITY_FILE, backups still run; restore and verify of an encrypted backup exit 2
        naming ENCRYPT_IDENTITY_FILE, and the target server is untouched."""
        env = exec_env(source, tmp_path, ENCRYPT_RECIPIENTS=age_key.recipient)
        (full,) = backup(env, "full")
        target = postgres_factory(databases=("keepme",))
        result = pgbackup("restore", "full", "--latest", "--force", "--yes", env=exec_env(target, tmp_path))
        assert result.returncode == 2
        assert "ENCRYPT_IDENTITY_FILE" in result.stderr
        assert "keepme" in target.psql("SELECT datname FROM pg_database")
        result = pgbackup("verify", str(full), "--no-restore", env=env)
        assert result.returncode == 2 and "ENCRYPT_IDENTITY_FILE" in result.stderr
        backup(env, "database", "authdb")  # the daemon's backups need only the public key

    def test_a_wrong_identity_is_refused_before_the_server_is_touched(self, source, postgres_factory, age_key,
                                                                      tmp_path):
        """An identity that is not a recipient's: the restore fails naming the variable, nothing restored."""
        (dump,) = backup(exec_env(source, tmp_path, ENCRYPT_RECIPIENTS=age_key.recipient), "database", "authdb")
        other = new_age_key(tmp_path / "other")
        target = postgres_factory(databases=())
        result = pgbackup("restore", "database", "authdb", "--from", str(dump), "--yes",
                          env=exec_env(target, tmp_path, ENCRYPT_IDENTITY_FILE=str(other.identity_file)))
        assert result.returncode != 0
        assert "ENCRYPT_IDENTITY_FILE" in result.stderr
        assert "authdb" not in target.psql("SELECT datname FROM pg_database")


class TestDamage:
    def test_a_flipped_byte_is_refused_before_the_server_is_touched(self, source, postgres_factory, age_key,
                                                                    tmp_path):
        """One flipped byte in the middle of an encrypted full backup, even with a manifest made to match it,
        fails the restore before any SQL reaches the server (every age chunk is authenticated first)."""
        (full,) = backup(exec_env(source, tmp_path, ENCRYPT_RECIPIENTS=age_key.recipient), "full")
        data = bytearray(full.read_bytes())
        data[len(data) * 3 // 4] ^= 0x01
        full.write_bytes(bytes(data))
        target = postgres_factory(databases=())
        env = exec_env(target, tmp_path, ENCRYPT_IDENTITY_FILE=str(age_key.identity_file))
        result = pgbackup("restore", "full", "--from", str(full), "--yes", env=env)
        assert result.returncode == 1 and "does not match the sha256 in its manifest" in result.stderr

        write_manifest(full, {**manifest_of(full), "sha256": hashlib.sha256(data).hexdigest()})
        result = pgbackup("restore", "full", "--from", str(full), "--yes", env=env)
        assert result.returncode == 1 and "cannot decrypt" in result.stderr, result.stderr
        assert target.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'app_user'") == "0"
        assert "authdb" not in target.psql("SELECT datname FROM pg_database")


def s3_env(s3_server) -> dict[str, str]:
    return {"S3_ENDPOINT_URL": s3_server.endpoint_url, "S3_BUCKET": s3_server.bucket,
            "AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key}


def aged(manifest: dict, file: str, days: int) -> dict:
    """The manifest moved ``days`` into the past under another file name."""
    started = datetime.fromisoformat(manifest["started_at"]) - timedelta(days=days)
    finished = datetime.fromisoformat(manifest["finished_at"]) - timedelta(days=days)
    return {**manifest, "file": file, "started_at": started.isoformat(), "finished_at": finished.isoformat()}


def tampering_events(stderr: str) -> list[dict]:
    return [event for event in log_events(stderr) if event.get("event") == "manifest_tampered"]


class TestSignedManifests:
    def test_a_forged_pair_in_the_bucket_is_never_restored_and_reported(self, source, postgres_factory, age_key,
                                                                        s3_server, tmp_path):
        """With MANIFEST_SIGNING_KEY_FILE, the genuine backup's S3 pair replaced by an attacker's (a valid
        dump and a manifest that matches it, unsigned): `restore --latest` refuses it as tampering and leaves
        the server alone; with the genuine pair back it restores."""
        signing_key = tmp_path / "signing.key"
        signing_key.write_text("0123456789abcdef" * 4 + "\n")
        env = exec_env(source, tmp_path / "backups", ENCRYPT_RECIPIENTS=age_key.recipient,
                       ENCRYPT_IDENTITY_FILE=str(age_key.identity_file),
                       MANIFEST_SIGNING_KEY_FILE=str(signing_key), **s3_env(s3_server))
        (genuine,) = backup(env, "database", "authdb")
        manifest = manifest_of(genuine)
        assert manifest["signature"].startswith("hmac-sha256:")
        # The attacker's pair: a real dump (encrypted to the public recipient), with a matching manifest.
        (theirs,) = backup(exec_env(source, tmp_path / "attacker", ENCRYPT_RECIPIENTS=age_key.recipient),
                           "database", "authdb")
        forged_data = theirs.read_bytes()
        forged_manifest = {**manifest_of(theirs), "file": genuine.name, "size_bytes": len(forged_data),
                           "sha256": hashlib.sha256(forged_data).hexdigest()}
        bucket = s3_server.client()
        bucket.put_object(Bucket=s3_server.bucket, Key=manifest["offsite"]["key"], Body=forged_data)
        bucket.put_object(Bucket=s3_server.bucket, Key=manifest["offsite"]["key"] + ".manifest.json",
                          Body=json.dumps(forged_manifest).encode())
        saved = tmp_path / "saved"
        saved.mkdir()
        for path in (genuine, genuine.with_name(genuine.name + ".manifest.json")):
            path.rename(saved / path.name)

        target = postgres_factory(databases=())
        target_env = {**env, **exec_env(target, tmp_path / "backups")}
        result = pgbackup("restore", "database", "authdb", "--latest", "--yes", env=target_env)
        assert result.returncode == 2, result.stderr
        assert "no backup of database 'authdb'" in result.stderr
        (event,) = tampering_events(result.stderr)
        assert event["location"] == "s3" and event["problem"] == "it is not signed"
        assert "authdb" not in target.psql("SELECT datname FROM pg_database")

        listing = pgbackup("list", "--json", env=target_env)
        assert listing.returncode == 0 and json.loads(listing.stdout) == []
        assert tampering_events(listing.stderr)

        for path in saved.iterdir():
            path.rename(genuine.with_name(path.name))
        target.psql("CREATE ROLE app_user")
        result = pgbackup("restore", "database", "authdb", "--latest", "--yes", env=target_env)
        assert result.returncode == 0, result.stderr
        assert table_fingerprints(target, "authdb") == table_fingerprints(source, "authdb")

    def test_retention_neither_counts_nor_deletes_foreign_manifests(self, source, age_key, s3_server, tmp_path):
        """Old unsigned backups (locally and in S3) are left alone by `pgbackup prune` and reported, and a
        badly signed manifest named on the command line is refused by restore and verify."""
        signing_key = tmp_path / "signing.key"
        signing_key.write_text("fedcba9876543210" * 4)
        directory = tmp_path / "backups"
        env = exec_env(source, directory, MANIFEST_SIGNING_KEY_FILE=str(signing_key), RETENTION_DATABASE_DAYS="1",
                       S3_RETENTION_DAYS="1", **s3_env(s3_server))
        (unsigned,) = backup(exec_env(source, directory, **s3_env(s3_server)), "database", "authdb")
        old_name = unsigned.name.replace("_2", "_1", 1)
        old = unsigned.rename(unsigned.with_name(old_name))
        write_manifest(old, aged(manifest_of(unsigned), old_name, days=30))
        unsigned.with_name(unsigned.name + ".manifest.json").unlink()
        bucket = s3_server.client()
        bucket.delete_object(Bucket=s3_server.bucket, Key=unsigned.name)
        bucket.delete_object(Bucket=s3_server.bucket, Key=unsigned.name + ".manifest.json")
        bucket.put_object(Bucket=s3_server.bucket, Key=old_name, Body=old.read_bytes())
        bucket.put_object(Bucket=s3_server.bucket, Key=old_name + ".manifest.json",
                          Body=json.dumps(manifest_of(old)).encode())
        (fresh,) = backup(env, "database", "authdb")
        without_key = {name: value for name, value in env.items() if name != "MANIFEST_SIGNING_KEY_FILE"}
        dry_run = pgbackup("prune", "--dry-run", env=without_key)
        assert dry_run.stdout.count(old_name) == 2, dry_run.stdout  # without the key both copies would go

        result = pgbackup("prune", env=env)
        assert result.returncode == 0, result.stderr
        assert old.exists() and fresh.exists()
        keys = {item["Key"] for item in bucket.list_objects_v2(Bucket=s3_server.bucket)["Contents"]}
        assert {manifest_of(fresh)["offsite"]["key"], old_name, old_name + ".manifest.json"} <= keys
        events = tampering_events(result.stderr)
        assert [event["file"] for event in events if event["location"] == "local"] == [old_name + ".manifest.json"]
        assert [event["key"] for event in events if event["location"] == "s3"] == [old_name + ".manifest.json"]

        tampered = {**manifest_of(fresh), "sha256": "0" * 64}
        write_manifest(fresh, tampered)
        for verb in (("restore", "database", "authdb", "--from", str(fresh), "--yes"),
                     ("verify", str(fresh), "--no-restore")):
            result = pgbackup(*verb, env=env)
            assert result.returncode == 2, result.stderr
            assert "signature does not match MANIFEST_SIGNING_KEY" in result.stderr


def volume_files(docker_client, image: str, volume: str) -> str:
    """`find` of the volume: every path with its owner, mode and size."""
    output = docker_client.containers.run(image, ["find", "/v", "-printf", "%P %U:%G %m %s\n"],
                                          volumes={volume: {"bind": "/v", "mode": "ro"}}, remove=True,
                                          labels=docker_env.docker_labels())
    return "\n".join(sorted(output.decode().splitlines()))


class TestEncryptedVolumeSnapshot:
    def test_a_snapshot_is_an_age_file_that_restore_volume_reads(self, docker_client, docker_volume_factory,
                                                                 postgres_image, age_key, tmp_path):
        """With ENCRYPT_RECIPIENTS a volume snapshot is postgres_volume_*.tar.gz.age (an age file, Debian's
        age + gunzip give its tar); restore-volume without the identity exits 2 naming it and creates no
        volume; with it the volume comes back with the same files, owners and modes."""
        volume = docker_volume_factory()
        docker_client.containers.run(postgres_image, ["sh", "-c", "mkdir -p /v/pgdata && echo 15 > /v/pgdata/PG_VERSION"
                                                      " && echo secret-row > /v/pgdata/data && chown -R 70:70 /v"],
                                     volumes={volume: {"bind": "/v", "mode": "rw"}}, remove=True,
                                     labels=docker_env.docker_labels())
        env = base_env(tmp_path, POSTGRES_HOST="127.0.0.1", POSTGRES_PASSWORD="unused", VOLUME_NAME=volume,
                       HELPER_IMAGE=postgres_image, ENCRYPT_RECIPIENTS=age_key.recipient)
        (snapshot,) = backup(env, "volume")
        assert snapshot.name.startswith("postgres_volume_") and snapshot.name.endswith(".tar.gz.age")
        assert manifest_of(snapshot)["encryption"] == "age"
        stored = snapshot.read_bytes()
        assert stored.startswith(AGE_HEADER) and b"secret-row" not in stored
        assert b"secret-row" in gzip.decompress(age_decrypt(age_key, snapshot))

        target = docker_env.unique_name("pgbackup-test-vol")
        result = pgbackup("restore-volume", str(snapshot), "--volume", target, env=env)
        assert result.returncode == 2 and "ENCRYPT_IDENTITY_FILE" in result.stderr
        assert not docker_client.volumes.list(filters={"name": target})

        target = docker_volume_factory()
        with_identity = {**env, "ENCRYPT_IDENTITY_FILE": str(age_key.identity_file)}
        result = pgbackup("restore-volume", str(snapshot), "--volume", target, env=with_identity)
        assert result.returncode == 0, result.stderr
        assert volume_files(docker_client, postgres_image, target) == volume_files(docker_client, postgres_image,
                                                                                   volume)
        result = pgbackup("verify", str(snapshot), env=with_identity)
        assert result.returncode == 0 and "decrypts completely" in result.stdout, result.stdout + result.stderr


class TestEveryKindEncrypted:
    def test_pre_migration_and_table_backups_are_age_files_that_restore(self, source, postgres_factory, age_key,
                                                                       tmp_path):
        """The two kinds the other tests leave out: a pre-migration backup and a table backup are *.age files
        holding no SQL; `restore full` of the first gives back every table of the source, and `restore table`
        of the second puts back rows changed since."""
        env = exec_env(source, tmp_path / "backups", ENCRYPT_RECIPIENTS=age_key.recipient,
                       ENCRYPT_IDENTITY_FILE=str(age_key.identity_file), BACKUP_TABLES="authdb:sessions")
        (before_migration,) = backup(env, "pre-migration")
        (table_backup,) = backup(env, "tables")
        for artifact in (before_migration, table_backup):
            assert artifact.name.endswith(".age") and manifest_of(artifact)["encryption"] == "age", artifact.name
            assert_encrypted(artifact.read_bytes())

        target = postgres_factory(databases=())
        result = pgbackup("restore", "full", "--from", str(before_migration), "--yes",
                          env={**env, **exec_env(target, tmp_path / "backups")})
        assert result.returncode == 0, result.stderr
        assert server_fingerprints(target, DATABASES) == server_fingerprints(source, DATABASES)

        expected = table_fingerprints(target, "authdb")
        target.psql("DELETE FROM sessions WHERE id % 2 = 0; UPDATE sessions SET note = 'changed'", db="authdb")
        assert table_fingerprints(target, "authdb") != expected
        result = pgbackup("restore", "table", "authdb", "sessions", "--from", str(table_backup), "--yes",
                          env={**env, **exec_env(target, tmp_path / "backups")})
        assert result.returncode == 0, result.stderr
        assert table_fingerprints(target, "authdb") == expected


class TestEncryptScopeOffsite:
    def test_local_copies_stay_plain_and_the_s3_copies_are_age_files_that_restore(
            self, source, age_key, s3_server, tmp_path):
        """ENCRYPT_SCOPE=offsite: the local dump is a plain custom archive; its S3 copy is <file>.age, an age
        file whose own signed manifest says age with the sha256 of the uploaded bytes, and that Debian's age
        decrypts to exactly the local file; `list` shows the pair as one backup in both places. With the local
        copy gone, restore picks the S3 copy: exit 2 naming ENCRYPT_IDENTITY_FILE without it, the source's
        tables with it."""
        signing_key = tmp_path / "signing.key"
        signing_key.write_text("0f" * 32)
        env = exec_env(source, tmp_path / "backups", ENCRYPT_RECIPIENTS=age_key.recipient, ENCRYPT_SCOPE="offsite",
                       MANIFEST_SIGNING_KEY_FILE=str(signing_key), **s3_env(s3_server))
        (dump,) = backup(env, "database", "authdb")
        assert dump.name.endswith(".dump") and dump.read_bytes().startswith(b"PGDMP")
        local = manifest_of(dump)
        assert local["encryption"] == "" and local["offsite"]["status"] == "complete"
        assert local["offsite"]["file"] == f"{dump.name}.age" and local["offsite"]["encryption"] == "age"

        bucket = s3_server.client()
        uploaded = bucket.get_object(Bucket=s3_server.bucket, Key=local["offsite"]["key"])["Body"].read()
        assert_encrypted(uploaded)
        remote = json.loads(bucket.get_object(Bucket=s3_server.bucket,
                                              Key=f"{local['offsite']['key']}.manifest.json")["Body"].read())
        assert remote["file"] == f"{dump.name}.age" and remote["encryption"] == "age"
        assert remote["recipients"] == [fingerprint(age_key.recipient)]
        assert remote["sha256"] == hashlib.sha256(uploaded).hexdigest() and remote["size_bytes"] == len(uploaded)
        assert remote["signature"].startswith("hmac-sha256:")
        copy_path = tmp_path / "copy.age"
        copy_path.write_bytes(uploaded)
        assert age_decrypt(age_key, copy_path) == dump.read_bytes()

        listing = pgbackup("list", env=env)
        assert listing.returncode == 0, listing.stderr
        lines = [line for line in listing.stdout.splitlines() if dump.name in line]
        assert len(lines) == 1 and "both" in lines[0], listing.stdout

        dump.unlink()
        dump.with_name(dump.name + ".manifest.json").unlink()
        restore = ("restore", "database", "authdb", "--latest", "--into", "authdb_from_s3", "--yes")
        refused = pgbackup(*restore, env=env)
        assert refused.returncode == 2 and "ENCRYPT_IDENTITY_FILE" in refused.stderr, refused.stderr
        result = pgbackup(*restore, env={**env, "ENCRYPT_IDENTITY_FILE": str(age_key.identity_file)})
        assert result.returncode == 0, result.stderr
        try:
            assert table_fingerprints(source, "authdb_from_s3") == table_fingerprints(source, "authdb")
        finally:
            source.psql("DROP DATABASE IF EXISTS authdb_from_s3")

    @pytest.mark.parametrize("missing", ["ENCRYPT_RECIPIENTS", "S3_BUCKET"])
    def test_offsite_scope_without_recipients_or_s3_is_refused_naming_the_variable(
            self, source, age_key, s3_server, tmp_path, missing):
        """Nothing would be encrypted: the settings error names ENCRYPT_SCOPE and what is missing."""
        env = exec_env(source, tmp_path, ENCRYPT_RECIPIENTS=age_key.recipient, ENCRYPT_SCOPE="offsite",
                       **s3_env(s3_server))
        del env[missing]
        result = pgbackup("backup", "database", "authdb", env=env)
        assert result.returncode == 2, result.stderr
        assert "ENCRYPT_SCOPE=offsite" in result.stderr and missing in result.stderr, result.stderr
        assert not list(tmp_path.glob("authdb_*"))
