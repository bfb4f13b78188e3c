"""When containers a volume snapshot stopped are started again: the record's expiry, the back-off
between failed starts, and the record's own fields."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.volumes.containers import ContainerRef, StoppedRecord, read_record, stale_message, write_record
from daemon.volumes.restart_policy import FIRST_RETRY, MAX_RETRY, RECORD_MAX_AGE, is_stale, parse_time, retry_delay

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
DB = ContainerRef("a" * 64, "ai-micro-postgres")


class TestRecordExpiry:
    def test_a_fresh_record_is_acted_on(self):
        """A record written minutes ago (a daemon killed mid-snapshot) is not stale."""
        assert not is_stale(NOW - timedelta(minutes=3), NOW)

    def test_the_bound_is_a_few_hours(self):
        """Up to RECORD_MAX_AGE (6 h) the record is acted on; a second later it is stale."""
        assert RECORD_MAX_AGE == timedelta(hours=6)
        assert not is_stale(NOW - RECORD_MAX_AGE, NOW)
        assert is_stale(NOW - RECORD_MAX_AGE - timedelta(seconds=1), NOW)

    def test_a_record_without_a_readable_time_is_stale(self):
        """A time that cannot be read is never a reason to start a database."""
        assert parse_time("last sunday") is None
        assert is_stale(parse_time("last sunday"), NOW)

    def test_times_in_other_zones_and_without_a_zone_compare_by_instant(self):
        """A record written in Europe/Berlin is aged by its instant; a zone-less one is taken as UTC."""
        berlin = datetime(2026, 11, 29, 3, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 02:30 UTC: 6.5 h before NOW
        assert is_stale(berlin, NOW)
        assert not is_stale(datetime(2026, 11, 29, 8, 0), NOW)


class TestBackOff:
    def test_doubles_from_the_first_retry_up_to_the_cap(self):
        """15 s, 30 s, 60 s, ... never more than 10 minutes between attempts."""
        delays = [retry_delay(failures) for failures in range(1, 9)]
        assert delays[:4] == [FIRST_RETRY, FIRST_RETRY * 2, FIRST_RETRY * 4, FIRST_RETRY * 8]
        assert delays[-1] == MAX_RETRY == timedelta(minutes=10)
        assert delays == sorted(delays)

    def test_no_failure_no_wait_and_huge_counts_stay_capped(self):
        """Before any failure an attempt is due at once; thousands of failures still wait only the cap."""
        assert retry_delay(0) == timedelta(0)
        assert retry_delay(10_000) == MAX_RETRY

    def test_attempts_within_the_record_lifetime(self):
        """Within the 6 h bound the daemon tries a few dozen times, not thousands."""
        elapsed, attempts = timedelta(0), 0
        while elapsed <= RECORD_MAX_AGE:
            attempts += 1
            elapsed += retry_delay(attempts)
        assert 30 < attempts < 45


class TestStoppedRecordFields:
    def test_the_record_names_its_snapshot_and_run(self, tmp_path):
        """The record says when it was written and by which snapshot; it reads back the same."""
        record = StoppedRecord("pgdata", NOW.isoformat(), [DB], snapshot="postgres_volume_20261129_090000.tar.gz",
                               run_id="r1")
        write_record(tmp_path, record)
        assert read_record(tmp_path) == record
        assert "postgres_volume_20261129_090000.tar.gz at 2026-11-29T09:00:00+00:00" in record.describe()

    def test_records_of_older_versions_still_read(self, tmp_path):
        """A record without snapshot and run id (written before they existed) reads, with both empty."""
        old = {"volume": "pgdata", "stopped_at": NOW.isoformat(), "containers": [{"id": DB.id, "name": DB.name}]}
        (tmp_path / ".pgbackup-volume-stopped.json").write_text(json.dumps(old))
        record = read_record(tmp_path)
        assert record.containers == [DB] and record.snapshot == "" and record.run_id == ""

    @pytest.mark.parametrize("snapshot", ["postgres_volume_20261129_090000.tar.gz", ""])
    def test_the_stale_message_says_what_happened_and_what_to_do(self, snapshot):
        """The message names the container, the snapshot and its time, and both ways out."""
        message = stale_message(StoppedRecord("pgdata", NOW.isoformat(), [DB], snapshot=snapshot), DB)
        assert "'ai-micro-postgres'" in message and NOW.isoformat() in message and snapshot in message
        assert "docker start ai-micro-postgres" in message and ".pgbackup-volume-stopped.json" in message
