"""`pgbackup restore point-in-time` after the host's disk is lost: the daemon streams WAL and takes
a base backup, both go to a real S3 (SeaweedFS), then BACKUP_DIR is emptied; the restore takes the
base and the WAL from S3 and brings back exactly the rows committed up to the target. Also
`--force` over a volume that holds a data directory, and a WAL file missing everywhere refused by
name before anything is written. One PostgreSQL 15 server, one S3 server and one disaster for
the module."""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from datetime import datetime, timezone

import docker.errors
import pyrage
import pytest

from daemon.encryption import Decryption, Encryption
from daemon.storage.s3 import Bucket
from daemon.wal import archive
from daemon.wal.archive import read_records
from daemon.wal.offsite import upload_pending
from daemon.wal.remote import OffsiteWal
from daemon.wal.segments import Segment, parse_segment
from tests.integration.test_daemon import wait_until
from tests.integration.test_wal_streaming import (
    FAR_AWAY,
    Writer,
    allow_replication,
    running_daemon,
    s3_env,
    switch_wal,
)
from tests.support import docker_env
from tests.support.pgbackup_cli import exec_env, pgbackup
from tests.support.postgres import start_postgres
from tests.support.s3 import S3Server


@pytest.fixture(scope="module")
def source(docker_client, postgres_image):
    server = start_postgres(docker_client, postgres_image, databases=("appdb",))
    try:
        allow_replication(server)
        server.psql("CREATE TABLE ticks (seq int NOT NULL, at timestamptz NOT NULL)", db="appdb")
        yield server
    finally:
        docker_env.remove_container(server.container)


@pytest.fixture(scope="module")
def offsite(tmp_path_factory):
    server = S3Server(base_dir=tmp_path_factory.mktemp("pitr-s3"))
    server.start()
    yield server
    server.kill()


def uploaded(backup_dir, name: str) -> bool:
    return any(record.name == name and record.offsite_key for record in read_records(backup_dir))


@pytest.fixture(scope="module")
def disaster(source, offsite, tmp_path_factory):
    """Streaming with S3, a base backup, writes, two segment switches uploaded; then the daemon
    stops and BACKUP_DIR is emptied (the host's disk lost). INSTANCE_NAME keeps the install's
    identity, as the runbook says to set it on the new host."""
    backup_dir = tmp_path_factory.mktemp("pitr-backups")
    env = exec_env(source, backup_dir, POSTGRES_PASSWORD=source.password, WAL_STREAMING="on",
                   INSTANCE_NAME="pitr-offsite", SCHEDULE_FULL=FAR_AWAY, SCHEDULE_DATABASES=FAR_AWAY,
                   SCHEDULE_RETENTION=FAR_AWAY, SCHEDULE_BASE=FAR_AWAY, SCHEDULE_RESTORE_TEST="off",
                   **s3_env(offsite))
    with running_daemon(env, backup_dir.parent / f"{backup_dir.name}-daemon.log"):
        wait_until(lambda: source.psql("SELECT active FROM pg_replication_slots") == "t", 60, "streaming")
        base = pgbackup("backup", "base", env=env)
        assert base.returncode == 0, base.stderr
        base_finished = datetime.now(timezone.utc)
        with Writer(source):
            time.sleep(3)
        # Two switches: the target's commits and a later one in complete segments (only those go to S3),
        # and a segment after the first, so that losing the first is a hole rather than an early end.
        first, second = switch_wal(source), switch_wal(source)
        wait_until(lambda: uploaded(backup_dir, second), 60, f"segment {second} uploaded")
    rows = [line.split("|") for line in source.psql(
        f"SELECT seq, at FROM ticks WHERE seq > 0 AND at > '{base_finished.isoformat()}' ORDER BY seq",
        db="appdb").splitlines()]
    assert len(rows) > 20
    middle = len(rows) // 2
    earlier, later = (datetime.fromisoformat(rows[i][1]) for i in (middle, middle + 1))
    target = (earlier + (later - earlier) / 2).astimezone(timezone.utc)
    expected = source.psql(f"SELECT count(*) FROM ticks WHERE at <= '{target.isoformat()}'", db="appdb")
    total = source.psql("SELECT count(*) FROM ticks", db="appdb")
    for entry in backup_dir.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return {"env": env, "target": target, "expected": expected, "max_seq": rows[middle][0], "total": total,
            "first": first, "second": second}


def restored_rows(docker_client, postgres_image, volume: str, password: str) -> tuple[str, str]:
    """(row count, max seq) of a server started on ``volume``."""
    server = start_postgres(docker_client, postgres_image, databases=(), volume=volume, password=password)
    try:
        assert server.psql("SELECT pg_is_in_recovery()") == "f"
        return (server.psql("SELECT count(*) FROM ticks", db="appdb"),
                server.psql("SELECT max(seq) FROM ticks WHERE seq > 0", db="appdb"))
    finally:
        docker_env.remove_container(server.container)


class TestRestoreFromS3:
    def test_with_local_base_and_wal_gone_s3_brings_back_exactly_the_rows_up_to_the_target(
            self, docker_client, postgres_image, source, disaster, docker_volume_factory):
        """BACKUP_DIR empty: the base and every WAL file come from S3, checked, and the restored server
        has exactly the rows committed up to the target; the report sets the time reached against it."""
        volume = docker_volume_factory("pgbackup-test-pitr-s3")
        result = pgbackup("restore", "point-in-time", "--to", disaster["target"].isoformat(sep=" "),
                          "--volume", volume, "--image", postgres_image, env=disaster["env"])
        assert result.returncode == 0, result.stderr
        assert "files fetched from S3" in result.stderr and "before the target" in result.stderr, result.stderr
        assert "no local .partial segment" in result.stderr
        assert restored_rows(docker_client, postgres_image, volume, source.password) == (
            disaster["expected"], disaster["max_seq"])


class TestForce:
    def test_a_volume_with_a_data_directory_is_replaced_only_with_force_and_never_while_in_use(
            self, docker_client, postgres_image, source, disaster, docker_volume_factory):
        """Over a data directory: refused naming --force; with --force refused while a container runs on
        the volume; with --force on an unused volume its content is replaced by the recovery (--latest:
        every row in the uploaded segments)."""
        volume = docker_volume_factory("pgbackup-test-pitr-force")
        first = pgbackup("restore", "point-in-time", "--to", disaster["target"].isoformat(sep=" "),
                         "--volume", volume, "--image", postgres_image, env=disaster["env"])
        assert first.returncode == 0, first.stderr

        refused = pgbackup("restore", "point-in-time", "--latest", "--volume", volume, "--image", postgres_image,
                           env=disaster["env"])
        assert refused.returncode != 0 and "--force" in refused.stderr, refused.stderr

        user = docker_client.containers.run(postgres_image, entrypoint=["sleep"], command=["infinity"], detach=True,
                                            name=docker_env.unique_name("pgbackup-test-pitr-user"),
                                            labels=docker_env.docker_labels(), volumes={volume: {"bind": "/data"}})
        try:
            in_use = pgbackup("restore", "point-in-time", "--latest", "--force", "--volume", volume,
                              "--image", postgres_image, env=disaster["env"])
            assert in_use.returncode != 0 and "in use" in in_use.stderr, in_use.stderr
        finally:
            docker_env.remove_container(user)
        assert restored_rows(docker_client, postgres_image, volume, source.password)[1] == disaster["max_seq"]

        forced = pgbackup("restore", "point-in-time", "--latest", "--force", "--volume", volume,
                          "--image", postgres_image, env=disaster["env"])
        assert forced.returncode == 0, forced.stderr
        assert "previous content deleted" in forced.stderr
        count, _ = restored_rows(docker_client, postgres_image, volume, source.password)
        assert count == disaster["total"]


class TestOffsiteRecords:
    KEY = b"k" * 32

    def test_only_trusted_records_are_read_and_every_download_is_checked(self, offsite, tmp_path):
        """Segments archived with MANIFEST_SIGNING_KEY and copied encrypted (ENCRYPT_SCOPE=offsite): read back
        from S3 with the key, an unsigned record is left out (the segment counts as missing), a copy whose
        bytes were swapped is refused naming the segment, and a good one reads back as the segment with the
        identity."""
        identity = pyrage.x25519.Identity.generate()
        key_file = tmp_path / "key.txt"
        key_file.write_text(f"{identity}\n")
        backup_dir = tmp_path / "backups"
        archive.ensure_dirs(backup_dir)
        for number in (1, 2, 3):
            (archive.spool_dir(backup_dir) / Segment(1, number).name).write_bytes(bytes([number]) * 8192)
        now = datetime.now(timezone.utc)
        archive.archive_completed(backup_dir, 1, lambda: now, signing_key=self.KEY)
        bucket = Bucket(client=offsite.client(), name=offsite.bucket, prefix="signed/", signing_key=self.KEY)
        copied = upload_pending(backup_dir, bucket, now, Encryption((str(identity.to_public()),)), self.KEY)
        assert len(copied) == 3
        client, folder = offsite.client(), "signed/wal/"
        unsigned = archive.WalRecord.from_json(
            client.get_object(Bucket=offsite.bucket, Key=f"{folder}{Segment(1, 2).name}.json")["Body"].read())
        client.put_object(Bucket=offsite.bucket, Key=f"{folder}{Segment(1, 2).name}.json",
                          Body=dataclasses.replace(unsigned, signature="").to_json().encode())
        third = f"{folder}{Segment(1, 3).name}.gz.age"
        client.put_object(Bucket=offsite.bucket, Key=third,
                          Body=client.get_object(Bucket=offsite.bucket, Key=f"{folder}{Segment(1, 1).name}.gz.age")
                          ["Body"].read())

        remote = OffsiteWal(bucket, self.KEY)
        records = remote.records(Segment(1, 1), skip=set())
        assert [record.name for record in records] == [Segment(1, 1).name, Segment(1, 3).name]
        assert remote.records(Segment(1, 2), skip={Segment(1, 3).name}) == []
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        path = remote.fetch_wal(records[0], downloads)
        assert b"".join(archive.read_checked_file(path, records[0], Decryption(key_file))) == bytes([1]) * 8192
        with pytest.raises(archive.WalArchiveError, match=Segment(1, 3).name):
            remote.fetch_wal(records[1], downloads)


class TestRefusal:
    def test_a_wal_file_missing_locally_and_in_s3_is_refused_by_name_and_nothing_is_written(
            self, docker_client, postgres_image, offsite, disaster):
        """The first switched segment deleted from S3 too: the restore refuses, naming it, and the volume
        it was given is not even created. (Last in the module: it removes an object the others need.)"""
        client, folder = offsite.client(), "prod/wal/"
        name = disaster["first"]
        keys = [item["Key"] for item in client.list_objects_v2(Bucket=offsite.bucket, Prefix=folder)["Contents"]]
        assert parse_segment(name) and f"{folder}{name}.json" in keys
        for key in keys:
            if key.removeprefix(folder).split(".")[0] == name:
                client.delete_object(Bucket=offsite.bucket, Key=key)
        volume = f"pgbackup-test-pitr-refused-{uuid.uuid4().hex[:8]}"
        try:
            result = pgbackup("restore", "point-in-time", "--to", disaster["target"].isoformat(sep=" "),
                              "--volume", volume, "--image", postgres_image, env=disaster["env"])
            assert result.returncode == 1 and "has a hole" in result.stderr and name in result.stderr, result.stderr
            with pytest.raises(docker.errors.NotFound):
                docker_client.volumes.get(volume)
        finally:
            try:
                docker_client.volumes.get(volume).remove(force=True)
            except docker.errors.NotFound:
                pass
