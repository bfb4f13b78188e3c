"""Which leftovers the start-up sweep takes for debris: only this install's, only abandoned ones."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.housekeeping.debris import abandoned_throwaways, abandoned_uploads, staging_databases
from daemon.restore.database import STAGING_NAME, new_staging_name
from daemon.verify.throwaway import CREATOR_LABEL, OWNER_LABEL, container_id

NOW = datetime(2026, 12, 5, 7, 0, tzinfo=ZoneInfo("UTC"))


def upload(key: str, age: timedelta) -> dict:
    return {"Key": key, "UploadId": "u-" + key, "Initiated": NOW - age}


class TestAbandonedUploads:
    def test_only_old_uploads_directly_under_the_prefix(self):
        """Older than an hour, directly under the prefix: aborted; younger, elsewhere or deeper: kept."""
        uploads = [
            upload("site-a/backup_all_1.sql.gz", timedelta(hours=2)),
            upload("site-a/backup_all_2.sql.gz", timedelta(minutes=10)),
            upload("site-b/backup_all_1.sql.gz", timedelta(days=3)),
            upload("site-a/sub/backup_all_1.sql.gz", timedelta(days=3)),
            upload("site-ab/backup_all_1.sql.gz", timedelta(days=3)),
        ]
        assert [u["Key"] for u in abandoned_uploads(uploads, "site-a/", NOW)] == ["site-a/backup_all_1.sql.gz"]

    def test_empty_prefix_means_the_bucket_top_level(self):
        """With no prefix, only keys at the top of the bucket count."""
        uploads = [upload("backup_all_1.sql.gz", timedelta(hours=2)), upload("x/y", timedelta(hours=2))]
        assert [u["Key"] for u in abandoned_uploads(uploads, "", NOW)] == ["backup_all_1.sql.gz"]


class TestAbandonedThrowaways:
    def test_only_this_installs_containers_whose_creator_is_gone(self):
        """Another install's, an unlabelled one and one whose creator runs are kept."""
        mine_gone = {OWNER_LABEL: "db", CREATOR_LABEL: "host/1"}
        mine_running = {OWNER_LABEL: "db", CREATOR_LABEL: "host/2"}
        others = {OWNER_LABEL: "other-db", CREATOR_LABEL: "host/1"}
        old = {}
        alive = {"host/2"}
        chosen = abandoned_throwaways([mine_gone, mine_running, others, old], "db", lambda c: c in alive)
        assert chosen == [mine_gone]


class TestStagingDatabases:
    def test_exact_names_only(self):
        """Only the names the restore code makes; look-alikes are the user's."""
        names = [new_staging_name(), "pgbackup_restore_keep", "app_pgbackup_restore_0123456789ab",
                 "pgbackup_restore_0123456789abc", "authdb"]
        assert staging_databases(names) == names[:1]
        assert STAGING_NAME.fullmatch(new_staging_name())


class TestContainerId:
    ID = "05812fc21868223c6250c5901b545984f4b59dd785f97059421001cffefefa99"
    OTHER = "f7abb48a82dcf813624fcc7e2cc3838443b0cca8d3995a4a6996d305424504ae"

    def test_the_container_of_this_process(self):
        """Inside a container: the id from the /etc/hostname mount, whatever `hostname:` is."""
        mountinfo = (f"175 120 254:0 /var/lib/docker/containers/{self.ID}/hostname /etc/hostname rw,relatime - "
                     "ext4 /dev/vda rw\n")
        assert container_id(mountinfo) == self.ID

    def test_none_on_a_docker_host(self):
        """On the host, the shm mounts of running containers name other containers: not ours."""
        mountinfo = (f"412 29 0:61 / /var/lib/docker/containers/{self.OTHER}/mounts/shm rw - tmpfs shm rw\n"
                     "29 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n")
        assert container_id(mountinfo) is None
