"""GFS tiers carried out for real: `pgbackup prune` over a real BACKUP_DIR, and the sweep over real S3 (SeaweedFS).

The policy's calendar rules are pinned in tests/unit/test_retention_gfs.py; here the point is that
the settings reach the sweep, the dry run names the tier that keeps each backup, and exactly the
backups that neither the window nor a tier keeps leave the disk and the bucket.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from daemon.housekeeping.prune import sweep
from daemon.manifest import Manifest, write_manifest
from daemon.monitoring.metrics import Metrics
from daemon.naming import full_backup_name, manifest_name
from daemon.settings import Settings
from daemon.storage.s3 import Bucket
from daemon.storage.s3_upload import MultipartUpload
from tests.support.pgbackup_cli import base_env, log_events, pgbackup

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def manifest_for(data: bytes, name: str, started: datetime) -> Manifest:
    return Manifest(kind="full", target="all", file=name, size_bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), started_at=started,
                    finished_at=started + timedelta(seconds=3), server_version="15.8", format="plain",
                    compression="gzip", pgbackup_version="0.1.0")


def make_backup(directory, started: datetime) -> str:
    """A full backup started at ``started``: its artifact and its manifest, as a run leaves them."""
    name = full_backup_name(started)
    data = f"dump {started.isoformat()}".encode()
    (directory / name).write_bytes(data)
    write_manifest(directory, manifest_for(data, name, started))
    return name


def month_before(day: date, months: int) -> date:
    """The first day of the month ``months`` before ``day``'s month."""
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def last_day(first: date) -> date:
    return month_before(first, -1) - timedelta(days=1)


class Calendar:
    """A full backup at 12:00 UTC every day from the first day of the month three months before
    yesterday's up to yesterday, plus one at 23:30 UTC on the last day of the month two before
    yesterday's: in Berlin that is already 00:30/01:30 on the 1st of the next month."""

    def __init__(self, directory) -> None:
        self.yesterday = datetime.now(UTC).date() - timedelta(days=1)
        self.months = [month_before(self.yesterday, n) for n in range(4)]  # yesterday's month first
        self.files: dict[date, str] = {}
        day = self.months[3]
        while day <= self.yesterday:
            self.files[day] = make_backup(directory, datetime.combine(day, time(12), UTC))
            day += timedelta(days=1)
        self.late = make_backup(directory, datetime.combine(last_day(self.months[2]), time(23, 30), UTC))

    def window(self, days: int) -> set[str]:
        """The backups within ``days`` of the newest (yesterday's)."""
        return {name for day, name in self.files.items() if (self.yesterday - day).days <= days}

    def newest_of(self, month: date) -> str:
        """The newest 12:00 backup of ``month`` (the late one belongs to the next month in Berlin)."""
        return self.files[min(last_day(month), self.yesterday)]


def dry_run_line(stdout: str, name: str) -> str:
    (line,) = [line for line in stdout.splitlines() if f" {name} " in line]
    return line


class TestLocalSweep:
    def test_prune_keeps_the_window_and_the_newest_backup_of_each_kept_month(self, tmp_path):
        """With RETENTION_FULL_DAYS=7 and RETENTION_KEEP_MONTHLY=3 in Europe/Berlin, `pgbackup prune --dry-run`
        names 'monthly YYYY-MM' for each month's newest backup and deletes nothing; `pgbackup prune` then
        leaves exactly the last 7 days, those three backups and the files that are not backups."""
        directory = tmp_path / "backups"
        directory.mkdir()
        calendar = Calendar(directory)
        (directory / "notes.txt").write_text("not a backup")
        env = base_env(directory, POSTGRES_CONTAINER="pgbackup-test-unused", TZ="Europe/Berlin",
                       RETENTION_FULL_DAYS="7", RETENTION_KEEP_MONTHLY="3")
        monthly = {calendar.newest_of(month): f"monthly {month:%Y-%m}" for month in calendar.months[:3]}
        expected = calendar.window(7) | set(monthly)

        before = sorted(path.name for path in directory.iterdir())
        dry = pgbackup("prune", "--dry-run", env=env)
        assert dry.returncode == 0, dry.stderr
        assert sorted(path.name for path in directory.iterdir()) == before
        for name, slot in monthly.items():
            assert slot in dry_run_line(dry.stdout, name)
        two_back = calendar.newest_of(calendar.months[2])
        assert dry_run_line(dry.stdout, two_back).startswith("keep")
        assert "past the 7-day window" in dry_run_line(dry.stdout, two_back)
        late = dry_run_line(dry.stdout, calendar.late)
        assert late.startswith("WOULD DELETE")
        assert f"monthly {calendar.months[1]:%Y-%m} is kept by a newer backup" in late  # Berlin's month, not UTC's

        result = pgbackup("prune", env=env)
        assert result.returncode == 0, result.stderr
        remaining = {path.name for path in directory.iterdir()} - {".pgbackup.lock"}
        assert remaining == {"notes.txt"} | expected | {manifest_name(name) for name in expected}
        deleted = {event["file"] for event in log_events(result.stderr) if event.get("event") == "retention_deleted"}
        assert deleted == (set(calendar.files.values()) | {calendar.late}) - expected

    def test_an_unusable_backup_never_fills_a_slot(self, tmp_path):
        """When the newest backup of a month has lost bytes, the month's slot goes to the newest usable one
        before it; the cut-short one is kept and reported, never counted."""
        directory = tmp_path / "backups"
        directory.mkdir()
        calendar = Calendar(directory)
        month = calendar.months[2]
        cut_short = calendar.newest_of(month)
        (directory / cut_short).write_bytes(b"du")
        day_before = calendar.files[last_day(month) - timedelta(days=1)]
        env = base_env(directory, POSTGRES_CONTAINER="pgbackup-test-unused", TZ="Europe/Berlin",
                       RETENTION_FULL_DAYS="7", RETENTION_KEEP_MONTHLY="3")

        result = pgbackup("prune", env=env)
        assert result.returncode == 1  # the unusable backup is reported
        assert f"unusable backup, kept and not counted by retention: local: {cut_short}" in result.stderr
        remaining = {path.name for path in directory.iterdir()}
        assert {cut_short, manifest_name(cut_short), day_before, manifest_name(day_before)} <= remaining
        assert calendar.files[last_day(month) - timedelta(days=2)] not in remaining
        deleted = {event["file"] for event in log_events(result.stderr) if event.get("event") == "retention_deleted"}
        assert cut_short not in deleted and day_before not in deleted


def put_copy(bucket: Bucket, started: datetime) -> str:
    name = full_backup_name(started)
    data = f"copy {started.isoformat()}".encode()
    manifest = manifest_for(data, name, started)
    upload = MultipartUpload(bucket, name)
    upload.write(data)
    upload.complete(manifest)
    upload.upload_manifest(manifest)
    return name


class TestOffsiteSweep:
    def test_s3_tiers_keep_their_own_slots(self, s3_server, tmp_path):
        """S3_RETENTION_KEEP_MONTHLY=3 and S3_RETENTION_KEEP_YEARLY=2 with a 7-day S3 window keep, in the bucket,
        the last week, the newest copy of October (monthly) and of 2025 (yearly); the other copies go, and the
        local tiers (unset) play no part."""
        settings = Settings(postgres_container="pgbackup-test-unused", backup_dir=tmp_path, tz="Europe/Berlin",
                            s3_endpoint_url=s3_server.endpoint_url, s3_bucket=s3_server.bucket,
                            aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret_key,
                            s3_prefix="gfs", s3_retention_days=7, s3_retention_keep_monthly=3,
                            s3_retention_keep_yearly=2)
        bucket = Bucket.from_settings(settings)
        noon = time(12, tzinfo=UTC)
        copies = {day: put_copy(bucket, datetime.combine(day, noon)) for day in (
            date(2025, 11, 30), date(2025, 12, 31), date(2026, 6, 15), date(2026, 9, 30), date(2026, 10, 15),
            date(2026, 10, 31), date(2026, 11, 15), date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 2),
            date(2026, 12, 3), date(2026, 12, 4))}
        now = datetime(2026, 12, 5, 6, tzinfo=BERLIN)

        report = sweep(settings, Metrics(), now, open_bucket=lambda: bucket)

        kept = {day for day in copies if day >= date(2026, 11, 30)} | {date(2026, 10, 31), date(2025, 12, 31)}
        listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix="gfs/")
        remaining = {item["Key"] for item in listing.get("Contents", ())}
        assert remaining == {f"gfs/{copies[day]}{suffix}" for day in kept for suffix in ("", ".manifest.json")}
        by_file = {item.file: item for item in report.items if item.location == "s3"}
        assert by_file[copies[date(2026, 10, 31)]].kept_by == ("monthly 2026-10",)
        assert by_file[copies[date(2025, 12, 31)]].kept_by == ("yearly 2025",)
        assert by_file[copies[date(2026, 11, 30)]].kept_by == ("window", "monthly 2026-11")
        assert report.errors == [] and report.refused == []
