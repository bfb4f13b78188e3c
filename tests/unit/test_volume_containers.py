"""Which containers a volume snapshot may stop, the record of stopped containers, and the
helper's pure parts (own container id, the snapshot name, the /healthz allowance)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.errors import SettingsError
from daemon.naming import volume_snapshot_name
from daemon.schedule import allowed_age, parse_crontab
from daemon.settings import Settings
from daemon.volumes.containers import (
    ContainerRef,
    StoppedRecord,
    VolumeError,
    VolumeInUse,
    clear_record,
    read_record,
    select_containers_to_stop,
    write_record,
)
from daemon.volumes.helper import own_container_id
from daemon.volumes.snapshot import check_volume_settings

DB = ContainerRef("a" * 64, "ai-micro-postgres")
OTHER = ContainerRef("b" * 64, "pgadmin")
UTC = ZoneInfo("UTC")


class TestSelectContainersToStop:
    def test_stops_the_named_database_container(self):
        """The running POSTGRES_CONTAINER that mounts the volume is the one container stopped."""
        assert select_containers_to_stop("pgdata", [DB], DB) == [DB]

    def test_nothing_runs_nothing_stops(self):
        """A volume no running container uses is copied without stopping anything."""
        assert select_containers_to_stop("pgdata", [], DB) == []
        assert select_containers_to_stop("pgdata", [], None) == []

    def test_refuses_when_an_unnamed_container_also_uses_the_volume(self):
        """Another running user of the volume is never stopped: the snapshot is refused, naming it."""
        with pytest.raises(VolumeInUse, match="pgadmin"):
            select_containers_to_stop("pgdata", [DB, OTHER], DB)

    def test_refuses_when_no_container_is_named(self):
        """Without POSTGRES_CONTAINER (TCP mode) a running user of the volume is refused, not stopped."""
        with pytest.raises(VolumeInUse, match="POSTGRES_CONTAINER is not set"):
            select_containers_to_stop("pgdata", [DB], None)

    def test_refuses_when_the_named_container_is_not_the_user(self):
        """POSTGRES_CONTAINER running elsewhere does not license stopping the volume's real user."""
        with pytest.raises(VolumeInUse, match="pgadmin"):
            select_containers_to_stop("pgdata", [OTHER], DB)


class TestStoppedRecord:
    def test_round_trip(self, tmp_path):
        """The record written before a stop reads back with the same containers."""
        record = StoppedRecord("pgdata", "2026-11-29T02:00:00+00:00", [DB])
        write_record(tmp_path, record)
        assert read_record(tmp_path) == record
        assert oct((tmp_path / ".pgbackup-volume-stopped.json").stat().st_mode & 0o777) == "0o600"
        clear_record(tmp_path)
        assert read_record(tmp_path) is None

    def test_unreadable_record_is_an_error_not_ignored(self, tmp_path):
        """A damaged record raises with a hint instead of silently forgetting stopped containers."""
        (tmp_path / ".pgbackup-volume-stopped.json").write_text("{not json")
        with pytest.raises(VolumeError, match="docker start"):
            read_record(tmp_path)


class TestOwnContainerId:
    def test_finds_the_id_in_mountinfo(self):
        """Docker's bind mounts of hostname/hosts/resolv.conf reveal the container id."""
        cid = "0123456789abcdef" * 4
        mountinfo = (
            "600 500 0:52 / / rw,relatime - overlay overlay rw\n"
            f"612 600 8:1 /var/lib/docker/containers/{cid}/resolv.conf /etc/resolv.conf rw - ext4 /dev/sda1 rw\n"
        )
        assert own_container_id(mountinfo) == cid

    def test_none_outside_a_container(self):
        """On a host there is no container id."""
        assert own_container_id("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n") is None


class TestSettingsAndNames:
    def test_snapshot_file_name(self):
        """Snapshots are named postgres_volume_YYYYmmdd_HHMMSS.tar.gz."""
        assert volume_snapshot_name(datetime(2026, 11, 29, 2, 0, 5, tzinfo=UTC)) == "postgres_volume_20261129_020005.tar.gz"

    def test_running_mode_is_refused_with_the_reason(self):
        """VOLUME_SNAPSHOT_MODE=running is a configuration error that explains why."""
        settings = Settings(postgres_container="db", volume_name="pgdata", volume_snapshot_mode="running")
        with pytest.raises(SettingsError, match="pg_backup_start") as caught:
            check_volume_settings(settings)
        assert caught.value.exit_code == 2

    def test_volume_name_is_required(self):
        """A volume snapshot without VOLUME_NAME is a configuration error."""
        with pytest.raises(SettingsError, match="VOLUME_NAME"):
            check_volume_settings(Settings(postgres_container="db"))


class TestAllowedAge:
    def test_weekly_schedule_gets_a_week_plus_the_slack(self):
        """A weekly job may be a week plus BACKUP_MAX_AGE_HOURS old before /healthz calls it overdue."""
        weekly = parse_crontab("0 2 * * 0", UTC)
        now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
        assert allowed_age(weekly, now, timedelta(hours=24)) == timedelta(days=8)

    def test_never_less_than_the_daemon_limit(self):
        """A frequent schedule keeps at least BACKUP_MAX_AGE_HOURS."""
        hourly = parse_crontab("0 * * * *", UTC)
        now = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
        assert allowed_age(hourly, now, timedelta(hours=24)) == timedelta(hours=25)

    def test_monthly_schedule_gets_its_longest_month(self):
        """Seen from February (a 28-day interval next), a monthly job still gets 31 days plus the slack."""
        monthly = parse_crontab("0 5 1 * *", UTC)
        now = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
        assert allowed_age(monthly, now, timedelta(hours=24)) == timedelta(days=32)

    def test_yearly_schedule_gets_its_year(self):
        once = parse_crontab("0 5 1 1 *", UTC)  # yearly: the next gap is a year, still two fires
        now = datetime(2026, 11, 26, tzinfo=UTC)
        assert allowed_age(once, now, timedelta(hours=24)) >= timedelta(days=366)
