"""Item 2: the debris a SIGKILL leaves (incomplete multipart uploads, restore-test containers,
staging databases, archive copies in the database container) is swept when the daemon starts,
and only what is provably this install's and abandoned.

Real services: SeaweedFS for the multipart upload (created with boto3 and left incomplete, as a
killed upload leaves it), real labelled containers, a real PostgreSQL server.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import docker.errors
import pytest

from daemon.housekeeping import debris
from daemon.lock import backup_lock
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.verify import throwaway
from tests.support.docker_env import docker_labels, free_port, remove_container, unique_name
from tests.support.pgbackup_cli import exec_env, log_events, start_pgbackup
from tests.support.postgres import PgServer, start_postgres

UTC = ZoneInfo("UTC")
FAR_AWAY = "0 3 1 1 *"  # once a year: never during a test
STAGING = "pgbackup_restore_0123456789ab"  # the exact form restore/database.py makes
NOT_STAGING = ("pgbackup_restore_keep", "app_pgbackup_restore_0123456789ab")
SCRATCH = "/tmp/pgbackup-restore.AbC123"  # mktemp's form in restore/feed.py
NOT_SCRATCH = "/tmp/pgbackup-restore-mine"


@pytest.fixture(scope="module")
def source(docker_client, postgres_image) -> Iterator[PgServer]:
    server = start_postgres(docker_client, postgres_image, databases=("authdb",))
    try:
        yield server
    finally:
        remove_container(server.container)


def dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def throwaway_container(client: docker.DockerClient, image: str, **labels: str):
    """A stand-in restore-test container (the image's server does not even start: only the labels matter)."""
    return client.containers.run(image, ["sleep", "600"], entrypoint=[], detach=True,
                                 name=unique_name("pgbackup-restore-test"),
                                 labels={throwaway.LABEL: "1", **labels, **docker_labels()})


def exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.containers.get(name)
    except docker.errors.NotFound:
        return False
    return True


def databases(server: PgServer) -> set[str]:
    return set(server.psql("SELECT datname FROM pg_database").splitlines())


def scratch_left(server: PgServer) -> list[str]:
    _, output = server.container.exec_run(["sh", "-c", "ls -d /tmp/pgbackup-restore* 2>/dev/null; true"])
    return sorted(output.decode().split())


def leave_restore_debris(server: PgServer) -> None:
    server.psql("".join(f'CREATE DATABASE "{name}";\n' for name in (STAGING, *NOT_STAGING)))
    server.container.exec_run(["sh", "-c", f"mkdir -p {SCRATCH}/x {NOT_SCRATCH} && echo data > {SCRATCH}/x/a.dump"])


def clear_restore_debris(server: PgServer) -> None:
    server.psql("".join(f'DROP DATABASE IF EXISTS "{name}";\n' for name in (STAGING, *NOT_STAGING)))
    server.container.exec_run(["sh", "-c", f"rm -rf {SCRATCH} {NOT_SCRATCH}"])


class TestDaemonStart:
    def test_the_daemon_sweeps_what_a_kill_left(self, source, docker_client, postgres_image, tmp_path):
        """`pgbackup run` removes at start the staging database, the archive copy in the database container
        and the restore-test containers of this install whose creator is gone (a process here, or another
        container), logs each, and leaves alone the look-alikes, a container of another install, an
        unlabelled one and those whose creator still runs."""
        leave_restore_debris(source)
        owner = source.name  # throwaway.install_owner for POSTGRES_CONTAINER=source
        gone = throwaway_container(docker_client, postgres_image, **{
            throwaway.OWNER_LABEL: owner, throwaway.CREATOR_LABEL: f"{throwaway.this_host()}/{dead_pid()}"})
        running = throwaway_container(docker_client, postgres_image, **{
            throwaway.OWNER_LABEL: owner, throwaway.CREATOR_LABEL: throwaway.this_process()})
        foreign = throwaway_container(docker_client, postgres_image, **{
            throwaway.OWNER_LABEL: "another-db", throwaway.CREATOR_LABEL: f"{throwaway.this_host()}/{dead_pid()}"})
        unowned = throwaway_container(docker_client, postgres_image)
        # made by a `pgbackup verify` in another container: running (kept) or removed since (swept)
        verify_running = throwaway_container(docker_client, postgres_image, **{
            throwaway.OWNER_LABEL: owner, throwaway.CREATOR_LABEL: f"{source.container.id}/7"})
        verify_gone = throwaway_container(docker_client, postgres_image, **{
            throwaway.OWNER_LABEL: owner, throwaway.CREATOR_LABEL: f"{'0' * 64}/7"})
        env = exec_env(source, tmp_path / "backups", METRICS_PORT=str(free_port()), SCHEDULE_FULL=FAR_AWAY,
                       SCHEDULE_DATABASES=FAR_AWAY, SCHEDULE_RETENTION=FAR_AWAY, SCHEDULE_RESTORE_TEST=FAR_AWAY)
        daemon = start_pgbackup("run", env=env)
        try:
            stdout = read_until(daemon, "debris_sweep_finished")
            daemon.send_signal(signal.SIGTERM)
            rest, stderr = daemon.communicate(timeout=30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
            for container in (gone, running, foreign, unowned, verify_running, verify_gone):
                remove_container(container)
            leftover = databases(source), scratch_left(source)
            clear_restore_debris(source)
        assert daemon.returncode == 0, stderr
        assert STAGING not in leftover[0] and set(NOT_STAGING) <= leftover[0]
        assert leftover[1] == [NOT_SCRATCH]
        assert not exists(docker_client, gone.name) and not exists(docker_client, verify_gone.name)
        events = log_events(stdout + rest)
        removed = {(e["what"], e["name"]) for e in events if e["event"] == "debris_removed"}
        assert removed == {("staging_database", STAGING), ("restore_copy", SCRATCH),
                           ("restore_test_container", gone.name), ("restore_test_container", verify_gone.name)}
        [unowned_warning] = [e for e in events if e["event"] == "restore_test_containers_unowned"]
        assert unowned.name in unowned_warning["containers"]

    def test_lock_held_by_a_restore_defers_the_database_sweeps(self, source, tmp_path):
        """While another process holds the backup lock (a restore may be using its staging database and
        archive copy), the start-up sweep touches neither, and says it deferred them."""
        leave_restore_debris(source)
        backup_dir = tmp_path / "backups"
        backup_dir.mkdir()
        settings = Settings(postgres_container=source.name, backup_dir=backup_dir,
                            schedule_restore_test="off")
        try:
            with backup_lock(backup_dir, {"kind": "restore database"}):
                report = sweep_in_other_process(settings)
            left = databases(source), scratch_left(source)
            again = debris.sweep_debris(settings, Metrics())
        finally:
            clear_restore_debris(source)
        assert "deferred=True" in report
        assert STAGING in left[0] and SCRATCH in left[1]
        assert again.removed == {"staging_database": [STAGING], "restore_copy": [SCRATCH]}


def sweep_in_other_process(settings: Settings) -> str:
    """The sweep run by another process (the flock is per open file: a thread would share ours)."""
    code = (
        "import sys; from daemon.housekeeping import debris; from daemon.monitoring.metrics import Metrics; "
        "from daemon.settings import Settings; "
        f"r = debris.sweep_debris(Settings(postgres_container={settings.postgres_container!r}, "
        f"backup_dir={str(settings.backup_dir)!r}, schedule_restore_test='off'), Metrics()); "
        "print(f'deferred={r.deferred} removed={r.removed}')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    return result.stdout


def read_until(process: subprocess.Popen, event: str, timeout: float = 60) -> str:
    """The daemon's stdout up to and including the log line of ``event``."""
    lines: list[str] = []
    deadline = datetime.now() + timedelta(seconds=timeout)
    for line in process.stdout:
        lines.append(line)
        if f'"event": "{event}"' in line:
            return "".join(lines)
        if datetime.now() > deadline:
            break
    raise AssertionError(f"no {event} in the daemon's log:\n{''.join(lines)[-3000:]}")


class TestIncompleteUploads:
    def settings(self, s3_server, backup_dir: Path, source: PgServer, prefix: str) -> Settings:
        backup_dir.mkdir(exist_ok=True)
        return Settings(postgres_container=source.name, backup_dir=backup_dir, s3_endpoint_url=s3_server.endpoint_url,
                        s3_bucket=s3_server.bucket, s3_prefix=prefix, aws_access_key_id=s3_server.access_key,
                        aws_secret_access_key=s3_server.secret_key, schedule_restore_test="off")

    def test_abandoned_uploads_under_the_prefix_are_aborted(self, s3_server, source, tmp_path):
        """An upload left incomplete under this install's prefix is aborted once it is older than an hour
        (now is passed in: SeaweedFS cannot backdate an upload); a fresh one, one under another install's
        prefix and one in a folder below the prefix are kept; a second sweep aborts nothing."""
        client = s3_server.client()
        ours = start_upload(client, s3_server.bucket, "site-a/backup_all_20261201_030000.sql.gz")
        start_upload(client, s3_server.bucket, "site-b/backup_all_20261201_030000.sql.gz")
        start_upload(client, s3_server.bucket, "site-a/other/file.bin")
        settings = self.settings(s3_server, tmp_path / "backups", source, "site-a")
        metrics = Metrics()

        fresh = debris.sweep_debris(settings, metrics)
        later = datetime.now(UTC) + timedelta(hours=2)
        swept = debris.sweep_debris(settings, metrics, now=later)
        again = debris.sweep_debris(settings, metrics, now=later)

        assert "multipart_upload" not in fresh.removed
        [aborted] = swept.removed["multipart_upload"]
        assert aborted.startswith("site-a/backup_all_20261201_030000.sql.gz")
        assert again.removed == {} and again.errors == {}
        left = {(u["Key"], u["UploadId"]) for u in client.list_multipart_uploads(Bucket=s3_server.bucket)["Uploads"]}
        assert ("site-a/backup_all_20261201_030000.sql.gz", ours) not in left
        assert {key for key, _ in left} == {"site-b/backup_all_20261201_030000.sql.gz", "site-a/other/file.bin"}
        assert metrics.debris_removed.labels("multipart_upload")._value.get() == 1

    def test_an_unreachable_store_never_fails_the_start(self, source, tmp_path):
        """S3 down at start: the upload sweep is logged and counted as failed, the other sweeps still run."""
        leave_restore_debris(source)
        backup_dir = tmp_path / "backups"
        backup_dir.mkdir()
        settings = Settings(postgres_container=source.name, backup_dir=backup_dir,
                            s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_bucket="gone",
                            aws_access_key_id="key", aws_secret_access_key="secret", schedule_restore_test="off")
        metrics = Metrics()
        try:
            report = debris.sweep_debris(settings, metrics)
        finally:
            clear_restore_debris(source)
        assert "multipart_upload" in report.errors
        assert metrics.debris_sweep_errors.labels("multipart_upload")._value.get() == 1
        assert report.removed["staging_database"] == [STAGING]


def start_upload(client, bucket: str, key: str) -> str:
    """A multipart upload with one part sent and never completed (what a killed upload leaves)."""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1024)
    return upload_id
