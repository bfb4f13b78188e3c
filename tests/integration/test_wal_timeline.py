"""Streaming after the database went back in time, against real PostgreSQL 15 containers and the
real daemon: the database container is replaced by one running on a volume recovered to an
earlier point (a new timeline). The receiver's spool is ahead of that server's history, so
pg_receivewal is refused once the undone future crosses a segment boundary (within one segment
pg_receivewal follows the timeline switch by itself); the daemon sets the spool aside (kept, not deleted) and streams the new
timeline without anyone moving files by hand."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from daemon.wal.archive import SET_ASIDE_PREFIX, read_records, wal_dir
from daemon.wal.segments import parse_segment
from tests.integration.test_daemon import get, wait_until
from tests.integration.test_wal_streaming import FAR_AWAY, allow_replication, running_daemon
from tests.support import docker_env
from tests.support.pgbackup_cli import exec_env, pgbackup
from tests.support.postgres import start_postgres


def archived_timelines(backup_dir: Path) -> set[int]:
    return {segment.timeline for record in read_records(backup_dir) if (segment := parse_segment(record.name))}


class TestNewTimeline:
    def test_after_a_point_in_time_restore_the_receiver_streams_the_new_timeline_by_itself(
            self, docker_client, postgres_image, docker_volume_factory, tmp_path):
        source = start_postgres(docker_client, postgres_image, databases=("appdb",))
        name, password = source.name, source.password
        replacement = None
        try:
            allow_replication(source)
            source.psql("CREATE TABLE ticks (seq int, at timestamptz)", db="appdb")
            backup_dir = tmp_path / "backups"
            port = docker_env.free_port()
            env = exec_env(source, backup_dir, POSTGRES_PASSWORD=password, WAL_STREAMING="on", METRICS_PORT=str(port),
                           SCHEDULE_FULL=FAR_AWAY, SCHEDULE_DATABASES=FAR_AWAY, SCHEDULE_RETENTION=FAR_AWAY,
                           SCHEDULE_BASE=FAR_AWAY, SCHEDULE_RESTORE_TEST="off")
            with running_daemon(env, tmp_path / "daemon.log"):
                wait_until(lambda: any((wal_dir(backup_dir) / ".spool").glob("*.partial")), 60, "streaming")
                assert pgbackup("backup", "base", env=env).returncode == 0
                source.psql("INSERT INTO ticks SELECT g, clock_timestamp() FROM generate_series(1, 100) g", db="appdb")
                time.sleep(1.5)
                target = datetime.now(timezone.utc)
                time.sleep(1.5)
                # The future the restore undoes, across two segment boundaries: the receiver resumes after the
                # newest complete segment, which the recovered server's history then does not reach.
                for first in (101, 151):
                    source.psql(f"INSERT INTO ticks SELECT g, clock_timestamp() FROM generate_series({first}, "
                                f"{first + 49}) g", db="appdb")
                    closed = source.psql("SELECT pg_walfile_name(pg_switch_wal())")
                    wait_until(lambda: closed in {r.name for r in read_records(backup_dir)}, 60, f"{closed} archived")
                volume = docker_volume_factory("pgbackup-test-pitr-timeline")
                restored = pgbackup("restore", "point-in-time", "--to", target.isoformat(sep=" "), "--volume", volume,
                                    "--image", postgres_image, env=env)
                assert restored.returncode == 0, restored.stderr

                docker_env.remove_container(source.container)  # the service now runs on the recovered volume
                replacement = start_postgres(docker_client, postgres_image, databases=(), volume=volume, name=name,
                                             password=password)
                assert replacement.psql("SELECT count(*) FROM ticks", db="appdb") == "100"
                wait_until(lambda: any(path.name.startswith(SET_ASIDE_PREFIX) for path in wal_dir(backup_dir).iterdir()),
                           90, "the spool set aside")
                wait_until(lambda: any((wal_dir(backup_dir) / ".spool").glob("00000002*.partial")), 90,
                           "streaming on timeline 2")
                replacement.psql("INSERT INTO ticks VALUES (-1, now())", db="appdb")
                closed = replacement.psql("SELECT pg_walfile_name(pg_switch_wal())")
                assert closed.startswith("00000002"), closed
                wait_until(lambda: closed in {r.name for r in read_records(backup_dir)}, 60, f"{closed} archived")
                wait_until(lambda: get(port, "/healthz")[0] == 200, 60, "/healthz ok again")

            aside = next(path for path in wal_dir(backup_dir).iterdir() if path.name.startswith(SET_ASIDE_PREFIX))
            kept = [path.name for path in aside.iterdir()]  # the undone future's newest WAL, kept
            assert kept and all(name.startswith("00000001") for name in kept), kept
            assert {1, 2} <= archived_timelines(backup_dir)
        finally:
            for server in (source, replacement):
                if server is not None:
                    docker_env.remove_container(server.container)
