"""Proof of point-in-time recovery in `pgbackup verify` and the scheduled restore test, against a real
PostgreSQL 15 container with WAL_STREAMING=on: the WAL archive is checked for continuity from the
oldest base backup on and the newest base backup is recovered with every WAL received into a
throwaway volume that is removed afterwards; a hole in the archive fails both, naming the segment."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.verify.pitr_proof import PROOF_LABEL
from daemon.verify.restore_test import PITR_TARGET, run_restore_test
from daemon.wal.archive import read_records, record_path, wal_dir
from tests.integration.test_daemon import wait_until
from tests.integration.test_wal_streaming import FAR_AWAY, allow_replication, running_daemon
from tests.support import docker_env
from tests.support.pgbackup_cli import exec_env, pgbackup
from tests.support.postgres import start_postgres


@pytest.fixture(scope="module")
def proof_source(docker_client, postgres_image):
    server = start_postgres(docker_client, postgres_image, databases=("appdb",))
    try:
        allow_replication(server)
        server.psql("CREATE TABLE ticks (seq int NOT NULL, at timestamptz NOT NULL)", db="appdb")
        yield server
    finally:
        docker_env.remove_container(server.container)


@pytest.fixture(scope="module")
def streamed(proof_source, postgres_image, tmp_path_factory):
    """A base backup and three closed segments after it, archived by `pgbackup run` with WAL_STREAMING=on;
    yields the settings (as the environment of the CLI)."""
    backup_dir = tmp_path_factory.mktemp("pitr-proof")
    env = exec_env(proof_source, backup_dir, POSTGRES_PASSWORD=proof_source.password, WAL_STREAMING="on",
                   RESTORE_TEST_IMAGE=postgres_image, SCHEDULE_FULL=FAR_AWAY, SCHEDULE_DATABASES=FAR_AWAY,
                   SCHEDULE_RETENTION=FAR_AWAY, SCHEDULE_BASE=FAR_AWAY, SCHEDULE_RESTORE_TEST="off")
    with running_daemon(env, backup_dir.parent / f"{backup_dir.name}-daemon.log"):
        wait_until(lambda: any((wal_dir(backup_dir) / ".spool").glob("*.partial")), 60, "the receiver to stream")
        base = pgbackup("backup", "base", env=env)
        assert base.returncode == 0, base.stderr
        for batch in range(3):
            proof_source.psql("INSERT INTO ticks SELECT g, clock_timestamp() FROM generate_series(1, 1000) g",
                              db="appdb")
            closed = proof_source.psql("SELECT pg_walfile_name(pg_switch_wal())")
            wait_until(lambda: closed in {r.name for r in read_records(backup_dir)}, 60, f"{closed} archived")
        time.sleep(1)
    yield env


def settings_of(env: dict[str, str]) -> Settings:
    wanted = ("POSTGRES_CONTAINER", "POSTGRES_PASSWORD", "BACKUP_DIR", "WAL_STREAMING", "RESTORE_TEST_IMAGE")
    return Settings(**{name.lower(): env[name] for name in wanted}, _env_file=None)


def proof_leftovers(docker_client) -> list[str]:
    return ([c.name for c in docker_client.containers.list(all=True, filters={"label": PROOF_LABEL})]
            + [v.name for v in docker_client.volumes.list(filters={"label": PROOF_LABEL})])


class TestRecoveryProof:
    def test_verify_and_the_restore_test_recover_the_newest_base_and_leave_nothing_behind(
            self, streamed, docker_client):
        """`pgbackup verify` with WAL_STREAMING=on reports the WAL continuous from the base and the base
        recovered with the WAL in a throwaway volume; the restore test does the same as target point-in-time,
        with its metric; neither leaves a container or volume."""
        verified = pgbackup("verify", "--latest", env=streamed)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        section = verified.stdout.split("point-in-time recovery: ", 1)[1]
        assert section.startswith("OK"), verified.stdout
        assert "WAL continuous from base backup base_" in section and "no hole" in section
        assert "in a throwaway volume" in section and "shut down cleanly" in section

        metrics = Metrics()
        run = run_restore_test(settings_of(streamed), metrics, docker_client, labels=docker_env.docker_labels())
        (result,) = [r for r in run.results if r.target == PITR_TARGET]
        assert result.ok and result.file.startswith("base_") and "recovered base backup" in result.detail, result
        assert metrics.registry.get_sample_value("pgbackup_restore_test_last_success_timestamp_seconds",
                                                 {"target": PITR_TARGET}) > 0
        assert proof_leftovers(docker_client) == []

    def test_a_hole_in_the_archive_fails_verify_naming_the_segment(self, streamed, docker_client):
        """With a segment after the base taken out of the archive (its file and record), verify exits 1 and
        says which segment is missing; nothing is recovered."""
        backup_dir = Path(streamed["BACKUP_DIR"])
        records = [r for r in read_records(backup_dir) if not r.name.endswith(".history")]
        missing = records[-2]
        moved = {path: path.read_bytes() for path in (wal_dir(backup_dir) / missing.file,
                                                      record_path(wal_dir(backup_dir), missing.name))}
        for path in moved:
            path.unlink()
        try:
            verified = pgbackup("verify", "--latest", "--no-restore", env=streamed)
            assert verified.returncode == 1, verified.stdout + verified.stderr
            assert "point-in-time recovery: FAILED" in verified.stdout and missing.name in verified.stdout, \
                verified.stdout
            run = run_restore_test(settings_of(streamed), Metrics(), docker_client, labels=docker_env.docker_labels())
            (result,) = [r for r in run.results if r.target == PITR_TARGET]
            assert not result.ok and missing.name in result.detail and not run.ok
        finally:
            for path, data in moved.items():
                path.write_bytes(data)
        assert proof_leftovers(docker_client) == []


class TestVerifiedBase:
    def test_a_base_whose_content_was_altered_behind_a_matching_sha256_is_refused_by_pg_verifybackup(
            self, streamed, docker_client, docker_volume_factory, postgres_image):
        """A relation file inside the newest base backup changed, with the manifest's sha256 and size made to
        match (unsigned manifests are trusted without MANIFEST_SIGNING_KEY): `restore point-in-time` unpacks
        it, pg_verifybackup finds the file's checksum differs from the backup's own backup_manifest, and the
        recovery fails saying so instead of starting a server on it."""
        backup_dir = Path(streamed["BACKUP_DIR"])
        (base_path,) = sorted(backup_dir.glob("base_*.tar.gz"))[-1:]
        manifest_path = base_path.with_name(base_path.name + ".manifest.json")
        original = base_path.read_bytes(), manifest_path.read_text()
        try:
            altered = alter_largest_relation_file(original[0])
            base_path.write_bytes(altered)
            manifest = json.loads(original[1])
            manifest.update(sha256=hashlib.sha256(altered).hexdigest(), size_bytes=len(altered))
            manifest_path.write_text(json.dumps(manifest))

            volume = docker_volume_factory("pgbackup-test-pitr-altered")
            result = pgbackup("restore", "point-in-time", "--latest", "--volume", volume, "--image", postgres_image,
                              env=streamed)
            assert result.returncode == 1, result.stderr
            assert "failed pg_verifybackup" in result.stderr and base_path.name in result.stderr, result.stderr
        finally:
            base_path.write_bytes(original[0])
            manifest_path.write_text(original[1])


def alter_largest_relation_file(tar_gz: bytes) -> bytes:
    """The gzip tar with one byte in the middle of its largest file under base/ flipped (same size)."""
    source = tarfile.open(fileobj=io.BytesIO(tar_gz), mode="r:gz")
    members = source.getmembers()
    victim = max((m for m in members if m.isfile() and m.name.startswith("base/")), key=lambda m: m.size)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as target:
        for member in members:
            data = source.extractfile(member).read() if member.isfile() else None
            if member.name == victim.name:
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()
