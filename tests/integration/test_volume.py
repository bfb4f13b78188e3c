"""Volume snapshots against real Docker volumes and PostgreSQL containers: snapshot under
writes, restore into a new volume and start a server on it, clone, and the database always
running again afterwards, also when the snapshot fails or the daemon died mid-way."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import tarfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from daemon.backup.runner import BackupRunner
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.volumes.snapshot import run_volume_snapshot
from tests.support import docker_env
from tests.support.pgbackup_cli import artifact_paths, base_env, exec_env, log_events, pgbackup, start_pgbackup, tcp_env
from tests.support.sample_data import seed, server_fingerprints

DATABASES = ["authdb", "apidb", "admindb"]
STATE_FILE = ".pgbackup-volume-stopped.json"


def volume_listing(docker_client, image: str, volume: str) -> dict[str, tuple[int, int, int, str]]:
    """path -> (uid, gid, mode, type) of everything in a volume, the root as ''."""
    output = docker_env.run_to_completion(
        docker_client, image, entrypoint=["find", "/v", "-printf", r"%P\t%U\t%G\t%m\t%y\n"],
        volumes={volume: {"bind": "/v", "mode": "ro"}},
    )
    listing = {}
    for line in output.decode().splitlines():
        path, uid, gid, mode, kind = line.split("\t")
        listing[path] = (int(uid), int(gid), int(mode, 8), kind)
    return listing


def tar_listing(artifact: Path) -> dict[str, tuple[int, int, int, str]]:
    kinds = {tarfile.DIRTYPE: "d", tarfile.REGTYPE: "f", tarfile.SYMTYPE: "l"}
    listing = {}
    with tarfile.open(artifact, "r:gz") as tar:
        for member in tar:
            name = member.name.removeprefix("./").rstrip("/")
            listing["" if name == "." else name] = (member.uid, member.gid, member.mode & 0o7777, kinds[member.type])
    return listing


def fill_volume(docker_client, image: str, volume: str, script: str) -> None:
    docker_env.run_to_completion(
        docker_client, image, entrypoint=["sh", "-c", script], volumes={volume: {"bind": "/v", "mode": "rw"}},
    )


def is_running(server) -> bool:
    server.container.reload()
    return server.container.status == "running"


def manifest_of(artifact: Path) -> dict:
    return json.loads(artifact.with_name(artifact.name + ".manifest.json").read_text())


class BackgroundWriter(threading.Thread):
    """Inserts increasing ids into postgres.writes, one transaction each, until stopped;
    failures (while the server is down) are counted and the writer carries on."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server = server
        self.committed: list[int] = []
        self.failures = 0
        self.stop_event = threading.Event()
        self._progress = threading.Condition()

    def run(self) -> None:
        next_id = 0
        while not self.stop_event.is_set():
            next_id += 1
            try:
                code, _ = self.server.container.exec_run(
                    ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", self.server.user, "-d", "postgres",
                     "-c", f"INSERT INTO writes VALUES ({next_id})"], user="postgres",
                )
            except Exception:  # the container is stopped: docker refuses the exec
                code = -1
            with self._progress:
                if code == 0:
                    self.committed.append(next_id)
                else:
                    self.failures += 1
                    time.sleep(0.05)
                self._progress.notify_all()

    def wait_for_commits(self, count: int, timeout: float = 120) -> int:
        """Wait until ``count`` more inserts committed; returns the newest committed id."""
        with self._progress:
            target = len(self.committed) + count
            assert self._progress.wait_for(lambda: len(self.committed) >= target, timeout), "the writer stalled"
            return self.committed[-1]

    def finish(self) -> None:
        self.stop_event.set()
        self.join(timeout=60)


def ids(server) -> list[int]:
    return [int(value) for value in server.psql("SELECT id FROM writes ORDER BY id").split()]


@pytest.fixture
def database_on_volume(postgres_factory, docker_volume_factory):
    """A server on its own named volume with a writes table (and no sample data)."""
    volume = docker_volume_factory()
    server = postgres_factory(volume=volume, databases=())
    server.psql("CREATE TABLE writes (id bigint PRIMARY KEY)")
    return server, volume


@pytest.fixture
def seeded_database_on_volume(database_on_volume):
    server, volume = database_on_volume
    for database in DATABASES:
        server.psql(f"CREATE DATABASE {database}")
    seed(server)
    return server, volume


class TestSnapshotRoundTrip:
    def test_snapshot_under_writes_restores_the_state_at_the_stop(
        self, seeded_database_on_volume, postgres_factory, docker_volume_factory, docker_client, postgres_image, tmp_path
    ):
        """A snapshot taken while a writer commits restores into a new volume on which a new server
        starts with exactly the commits made before the stop, owners and modes kept."""
        server, volume = seeded_database_on_volume
        writer = BackgroundWriter(server)
        writer.start()
        try:
            confirmed_before = writer.wait_for_commits(3)
            result = pgbackup("backup", "volume", env=exec_env(server, tmp_path, VOLUME_NAME=volume))
            assert result.returncode == 0, result.stderr
            assert is_running(server)
            writer.wait_for_commits(3)  # the writer carries on after the restart
        finally:
            writer.finish()
        (artifact,) = artifact_paths(result)
        assert artifact.name.startswith("postgres_volume_") and artifact.name.endswith(".tar.gz")

        manifest = manifest_of(artifact)
        assert manifest["kind"] == "volume" and manifest["target"] == volume
        assert manifest["format"] == "tar" and manifest["compression"] == "gzip"
        assert manifest["server_version"] == "15"
        assert manifest["size_bytes"] == artifact.stat().st_size
        assert manifest["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
        assert manifest["details"]["stopped_containers"] == [server.name]
        assert manifest["details"]["clean_shutdown"] is True
        assert manifest["details"]["downtime_seconds"] > 0
        assert not (tmp_path / STATE_FILE).exists()
        downtime = [e for e in log_events(result.stderr) if e["event"] == "volume_downtime"]
        assert downtime and downtime[0]["containers"] == [server.name]

        restored_volume = docker_volume_factory()
        restored = pgbackup("restore-volume", str(artifact), "--volume", restored_volume,
                            env=exec_env(server, tmp_path))
        assert restored.returncode == 0, restored.stderr
        # Checked before any server touches the volume: the entrypoint would fix owners itself.
        assert volume_listing(docker_client, postgres_image, restored_volume) == tar_listing(artifact)

        copy = postgres_factory(volume=restored_volume, databases=())
        assert server_fingerprints(copy, DATABASES) == server_fingerprints(server, DATABASES)
        restored_ids, source_ids = ids(copy), ids(server)
        assert restored_ids[-1] >= confirmed_before  # commits made before the snapshot are in it
        # The state at the stop: every commit up to the newest one in the copy, nothing after it.
        assert restored_ids == [i for i in source_ids if i <= restored_ids[-1]]
        assert source_ids[-1] > restored_ids[-1]  # and the source went on after the restart


class TestDatabaseRunsAgain:
    def test_failed_snapshot_starts_the_database_again(self, database_on_volume, tmp_path):
        """A snapshot that fails after the stop (BACKUP_DIR full) starts the container again, leaves no
        file behind and counts a failure with the downtime in the metrics."""
        server, volume = database_on_volume
        backup_dir = tmp_path / "small"
        backup_dir.mkdir()
        # A 1 MiB tmpfs: the real ENOSPC of a full disk, hit while the database is stopped.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(backup_dir)], check=True)
        try:
            settings = Settings(
                postgres_container=server.name, volume_name=volume, backup_dir=backup_dir, _env_file=None,
            )
            metrics = Metrics()
            now = datetime.now(settings.timezone)
            runner = BackupRunner(settings, metrics, HealthState(now, timedelta(hours=24)))
            outcome = run_volume_snapshot(runner, settings)
            leftovers = sorted(path.name for path in backup_dir.iterdir())
        finally:
            subprocess.run(["umount", str(backup_dir)], check=True)
        assert not outcome.ok and "No space left" in outcome.failures[0].error
        assert leftovers == [".pgbackup.lock"]  # no partial file, no record of stopped containers
        assert is_running(server)
        assert server.psql("SELECT count(*) FROM writes") == "0"  # and it answers queries
        rendered = metrics.render().decode()
        assert f'pgbackup_runs_total{{kind="volume",status="failure",target="{volume}"}} 1.0' in rendered
        assert metrics.registry.get_sample_value("pgbackup_volume_downtime_seconds", {"target": volume}) > 0

    def test_restarted_daemon_starts_containers_a_crashed_snapshot_left_stopped(self, database_on_volume, tmp_path):
        """The daemon starts on start-up the containers recorded as stopped by a snapshot that died."""
        server, volume = database_on_volume
        server.stop()
        # Written minutes ago: a record older than the bound is left alone (tests/reliability/test_volume_supervision.py).
        record = {"volume": volume, "stopped_at": datetime.now().astimezone().isoformat(),
                  "containers": [{"id": server.container.id, "name": server.name}]}
        (tmp_path / STATE_FILE).write_text(json.dumps(record))
        env = exec_env(server, tmp_path, VOLUME_NAME=volume, METRICS_PORT=str(docker_env.free_port()))
        daemon = start_pgbackup("run", env=env)
        try:
            deadline = time.monotonic() + 120
            while not is_running(server) or (tmp_path / STATE_FILE).exists():  # cleared once PostgreSQL is ready
                assert daemon.poll() is None and time.monotonic() < deadline, "the daemon did not start the container"
                time.sleep(0.2)
            server.wait_ready(120)
        finally:
            daemon.terminate()
            stdout, stderr = daemon.communicate(timeout=60)
        events = [e["event"] for e in log_events(stdout)]
        assert "restarting_containers_left_stopped" in events, stdout + stderr
        assert not (tmp_path / STATE_FILE).exists()

    def test_unnamed_container_using_the_volume_is_never_touched(self, database_on_volume, tmp_path):
        """Without POSTGRES_CONTAINER naming it, a running user of the volume makes the snapshot fail
        with its name, and it keeps running."""
        server, volume = database_on_volume
        started_at = server.container.attrs["State"]["StartedAt"]
        result = pgbackup("backup", "volume", env=tcp_env(server, tmp_path, VOLUME_NAME=volume,
                                                          HELPER_IMAGE=server.image))
        assert result.returncode == 1
        assert server.name in result.stderr and "POSTGRES_CONTAINER" in result.stderr
        server.container.reload()
        assert server.container.status == "running" and server.container.attrs["State"]["StartedAt"] == started_at
        assert not list(tmp_path.glob("postgres_volume_*"))

    def test_running_mode_is_refused(self, tmp_path):
        """VOLUME_SNAPSHOT_MODE=running is refused as a configuration error (exit 2) with the reason."""
        env = base_env(tmp_path, POSTGRES_CONTAINER="pgbackup-test-unused", VOLUME_NAME="pgbackup-test-unused",
                       VOLUME_SNAPSHOT_MODE="running")
        result = pgbackup("backup", "volume", env=env)
        assert result.returncode == 2 and "pg_backup_start" in result.stderr


ODD_FILES = (
    "mkdir -p /v/pgdata/base && echo 15 > /v/pgdata/PG_VERSION && chown -R 999:998 /v/pgdata && "
    "chmod 700 /v/pgdata && chmod 600 /v/pgdata/PG_VERSION && "
    "mkdir /v/shared && chown 123:456 /v/shared && chmod 2750 /v/shared && "
    "echo x > /v/shared/file && chown 4242:4243 /v/shared/file && chmod 0640 /v/shared/file && "
    "ln -s pgdata/PG_VERSION /v/link && chown 70:70 /v && chmod 0751 /v"
)


class TestRestoreVolume:
    @pytest.fixture
    def snapshot(self, docker_client, docker_volume_factory, postgres_image, tmp_path):
        """A snapshot of a small volume with odd owners and modes that no container uses."""
        volume = docker_volume_factory()
        fill_volume(docker_client, postgres_image, volume, ODD_FILES)
        env = base_env(tmp_path, POSTGRES_HOST="127.0.0.1", POSTGRES_PASSWORD="unused", VOLUME_NAME=volume,
                       HELPER_IMAGE=postgres_image)
        result = pgbackup("backup", "volume", env=env)
        assert result.returncode == 0, result.stderr
        (artifact,) = artifact_paths(result)
        return volume, artifact, env

    def test_owners_and_modes_survive_and_non_empty_volumes_are_refused(
        self, snapshot, docker_client, docker_volume_factory, postgres_image
    ):
        """A restore reproduces numeric owners and modes (the root's too); a second restore into the
        now non-empty volume is refused, and --force replaces its content."""
        volume, artifact, env = snapshot
        target = docker_volume_factory()
        assert pgbackup("restore-volume", str(artifact), "--volume", target, env=env).returncode == 0
        source_listing = volume_listing(docker_client, postgres_image, volume)
        assert volume_listing(docker_client, postgres_image, target) == source_listing
        assert source_listing[""] == (70, 70, 0o751, "d") and source_listing["shared"] == (123, 456, 0o2750, "d")
        assert manifest_of(artifact)["server_version"] == "15"  # found one directory down

        fill_volume(docker_client, postgres_image, target, "echo stray > /v/stray")
        refused = pgbackup("restore-volume", str(artifact), "--volume", target, env=env)
        assert refused.returncode == 1 and "not empty" in refused.stderr
        assert "stray" in volume_listing(docker_client, postgres_image, target)

        forced = pgbackup("restore-volume", str(artifact), "--volume", target, "--force", env=env)
        assert forced.returncode == 0, forced.stderr
        assert volume_listing(docker_client, postgres_image, target) == source_listing

    def test_damaged_artifact_is_refused_before_anything_is_written(self, snapshot, docker_client, postgres_image,
                                                                    tmp_path):
        """An artifact whose sha256 differs from its manifest is refused and the volume is not created."""
        volume, artifact, env = snapshot
        damaged = tmp_path / "copy" / artifact.name
        damaged.parent.mkdir()
        data = bytearray(artifact.read_bytes())
        data[len(data) // 2] ^= 0xFF
        damaged.write_bytes(bytes(data))
        damaged.with_name(damaged.name + ".manifest.json").write_text(
            artifact.with_name(artifact.name + ".manifest.json").read_text())
        name = docker_env.unique_name("pgbackup-test-vol")
        result = pgbackup("restore-volume", str(damaged), "--volume", name, env=env)
        assert result.returncode == 1 and "does not match its manifest" in result.stderr
        assert not docker_client.volumes.list(filters={"name": name})


    def test_the_snapshot_run_writes_a_run_log(self, snapshot, tmp_path):
        """Like every backup run, a volume snapshot writes its log lines to a run log in BACKUP_DIR."""
        events = [json.loads(line) for path in tmp_path.glob("backup_*.log") for line in path.read_text().splitlines()]
        names = {event.get("event") for event in events if event.get("kind") == "volume"}
        assert {"run_started", "run_finished"} <= names

    def test_verify_reads_the_whole_snapshot(self, snapshot, tmp_path):
        """`pgbackup verify` on a snapshot checks its sha256 and reads the tar to its end (finding the
        PG_VERSION); one whose tar was cut short, with a manifest that matches the cut file, fails."""
        _, artifact, env = snapshot
        result = pgbackup("verify", str(artifact), env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{artifact.name}: OK" in result.stdout and "a PostgreSQL 15 data directory" in result.stdout
        assert "not restored into a throwaway container" in result.stdout

        tar = gzip.decompress(artifact.read_bytes())
        cut = tmp_path / "cut" / artifact.name
        cut.parent.mkdir()
        cut.write_bytes(gzip.compress(tar[: len(tar) // 2]))
        manifest = manifest_of(artifact)
        manifest.update(size_bytes=cut.stat().st_size, sha256=hashlib.sha256(cut.read_bytes()).hexdigest())
        cut.with_name(cut.name + ".manifest.json").write_text(json.dumps(manifest))
        failed = pgbackup("verify", str(cut), env=env)
        assert failed.returncode == 1 and "FAILED" in failed.stdout and "tar" in failed.stdout, failed.stdout


class TestCloneVolume:
    def test_clone_of_a_running_database(
        self, seeded_database_on_volume, postgres_factory, docker_volume_factory, tmp_path
    ):
        """A clone of a volume in use is refused without --stop; with --stop the database is stopped,
        copied and started again, and a server starts on the copy with equal data; a non-empty DEST is refused."""
        server, volume = seeded_database_on_volume
        dest = docker_volume_factory()
        env = exec_env(server, tmp_path)
        refused = pgbackup("clone-volume", volume, dest, env=env)
        assert refused.returncode == 1 and "--stop" in refused.stderr and is_running(server)

        cloned = pgbackup("clone-volume", volume, dest, "--stop", env=env)
        assert cloned.returncode == 0, cloned.stderr
        assert is_running(server) and not (tmp_path / STATE_FILE).exists()
        again = pgbackup("clone-volume", volume, dest, "--stop", env=env)
        assert again.returncode == 1 and "not empty" in again.stderr

        copy = postgres_factory(volume=dest, databases=())
        assert server_fingerprints(copy, DATABASES) == server_fingerprints(server, DATABASES)
