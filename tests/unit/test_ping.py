"""The pure parts of dead-man pings: which URL a kind's run pings, the /start and /fail URLs,
and a body that is redacted and bounded."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from daemon.backup.outcome import RunOutcome, TargetFailure
from daemon.logs import REDACTED, redactor
from daemon.manifest import Manifest
from daemon.notify.ping import BODY_LIMIT, FAIL, START, SUCCESS, event_url, finished_event, ping_body, ping_urls
from daemon.settings import Settings

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=ZoneInfo("UTC"))


def manifest(target: str = "all", file: str = "backup_all_20261126_030000.sql.gz") -> Manifest:
    return Manifest(kind="full", target=target, file=file, size_bytes=10, sha256="ab", started_at=T0,
                    finished_at=T0, server_version="15.8", format="plain", compression="gzip")


def settings_for(**values: str) -> Settings:
    return Settings(postgres_container="pg", **values)


class TestPingUrls:
    def test_no_url_no_pings(self):
        """Without any PING_URL* no kind pings."""
        assert ping_urls(settings_for()) == {}

    def test_ping_url_serves_every_kind(self):
        """PING_URL alone is pinged by the runs of every kind."""
        urls = ping_urls(settings_for(ping_url="https://hc-ping.com/all"))
        assert urls == dict.fromkeys(["full", "pre_migration", "database", "table", "volume"], "https://hc-ping.com/all")

    def test_a_kind_url_replaces_ping_url_for_that_kind(self):
        """PING_URL_DATABASES is pinged by per-database runs, PING_URL by the others; pre-migration follows full."""
        urls = ping_urls(settings_for(ping_url="https://hc/all", ping_url_databases="https://hc/db",
                                      ping_url_full="https://hc/full"))
        assert urls == {"full": "https://hc/full", "pre_migration": "https://hc/full", "database": "https://hc/db",
                        "table": "https://hc/all", "volume": "https://hc/all"}

    def test_a_kind_url_alone_pings_only_that_kind(self):
        """With only PING_URL_VOLUME set, only volume snapshots ping."""
        assert ping_urls(settings_for(ping_url_volume="http://kuma:3001/vol")) == {"volume": "http://kuma:3001/vol"}


class TestEventUrl:
    @pytest.mark.parametrize(("base", "event", "expected"), [
        ("https://hc-ping.com/abc", SUCCESS, "https://hc-ping.com/abc"),
        ("https://hc-ping.com/abc", START, "https://hc-ping.com/abc/start"),
        ("https://hc-ping.com/abc", FAIL, "https://hc-ping.com/abc/fail"),
        ("https://hc-ping.com/abc/", FAIL, "https://hc-ping.com/abc/fail"),
        ("https://hc-ping.com/key/db-backup?create=1", START, "https://hc-ping.com/key/db-backup/start?create=1"),
        ("http://hc:8000", START, "http://hc:8000/start"),
    ])
    def test_healthchecks_conventions(self, base, event, expected):
        """start and fail are path suffixes of the check's URL (before any query string); success is the URL."""
        assert event_url(base, event) == expected


class TestBody:
    def test_secrets_are_masked(self, monkeypatch):
        """A secret inside a failure reason never leaves in the ping's body."""
        monkeypatch.setattr(redactor, "secrets", ["correct-horse-battery"])
        body = ping_body("pg_dump failed: password correct-horse-battery rejected").decode()
        assert "correct-horse-battery" not in body and REDACTED in body

    def test_bounded_without_breaking_a_character(self):
        """A long reason is cut to BODY_LIMIT bytes and still decodes as UTF-8."""
        body = ping_body("ü" * BODY_LIMIT)
        assert len(body) <= BODY_LIMIT
        assert body.decode("utf-8") == "ü" * (BODY_LIMIT // 2)


class TestFinishedEvent:
    def test_success_needs_every_backup(self):
        """A run with a backup and no failure pings success; a failed target or no backup at all pings fail."""
        failed = RunOutcome("r1", "database", T0, failures=[TargetFailure("database", "apidb", "boom")])
        empty = RunOutcome("r2", "full", T0)
        good = RunOutcome("r3", "full", T0, artifacts=[manifest()])
        assert finished_event(failed) == FAIL and finished_event(empty) == FAIL
        assert finished_event(good) == SUCCESS
