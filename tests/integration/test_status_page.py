"""The status page (GET / on METRICS_PORT) of a real daemon, rendered by a real headless Chromium.

Backups are taken by `pgbackup backup` from a real PostgreSQL container; older backups of the
30-day chart and two older targets (one ageing, one stale) are manifests written with the
project's own write_manifest next to them. Chromium (Debian's `chromium`) must be installed: a
missing browser fails these tests, it never skips them.
"""

from __future__ import annotations

import dataclasses
import re
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.manifest import Manifest, read_manifest, write_manifest
from daemon.naming import database_backup_name, full_backup_name, manifest_name
from tests.support.chromium import chromium, read_png
from tests.support.docker_env import free_port
from tests.support.pgbackup_cli import artifact_paths, exec_env, pgbackup, start_pgbackup

FAR_AWAY = "0 3 1 1 *"  # once a year: never during a test
HISTORY_DAYS = 25
# The badge colours of statuspage.STYLE: present in the screenshot only if the style applied
# under the page's Content-Security-Policy.
GREEN, AMBER, RED = (0x1A, 0x7F, 0x37), (0xBF, 0x87, 0x00), (0xCF, 0x22, 0x2E)


def older_copy(manifest: Manifest, age: timedelta, file: str, **changes: object) -> Manifest:
    started = datetime.now(timezone.utc) - age
    return dataclasses.replace(manifest, file=file, started_at=started, finished_at=started + timedelta(seconds=5),
                               run_id=f"older-{file}", **changes)


def write_history(backups: Path, full: Manifest, database: Manifest) -> None:
    """A month of daily full backups before the real one, and two database targets last backed
    up 20 h ago (amber under a 24 h limit, with an offsite copy) and 40 h ago (red)."""
    for days in range(1, HISTORY_DAYS + 1):
        moment = datetime.now(timezone.utc) - timedelta(days=days)
        write_manifest(backups, older_copy(full, timedelta(days=days), full_backup_name(moment),
                                           size_bytes=full.size_bytes - days * 40))
    for target, hours, offsite in (("ledger", 20, {"status": "complete"}), ("archive", 40, {})):
        moment = datetime.now(timezone.utc) - timedelta(hours=hours)
        write_manifest(backups, older_copy(database, timedelta(hours=hours),
                                           database_backup_name(target, database.format, moment), target=target,
                                           offsite=offsite))


def get_status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@pytest.fixture(scope="module")
def status_daemon(small_source, tmp_path_factory):
    """A running `pgbackup run` over a BACKUP_DIR with real backups and their history; yields
    (url, backups, the real full backup's manifest)."""
    backups = tmp_path_factory.mktemp("status-backups")
    port = free_port()
    env = exec_env(small_source, backups, METRICS_PORT=str(port), SCHEDULE_FULL=FAR_AWAY,
                   SCHEDULE_DATABASES=FAR_AWAY, SCHEDULE_RETENTION=FAR_AWAY, BACKUP_DATABASES="authdb", TZ="UTC")
    manifests = []
    for kind in ("full", "databases"):
        result = pgbackup("backup", kind, env=env)
        assert result.returncode == 0, result.stderr
        (artifact,) = artifact_paths(result)
        manifests.append(read_manifest(artifact.with_name(manifest_name(artifact.name))))
    write_history(backups, *manifests)
    process = start_pgbackup("run", env=env)
    try:
        deadline = time.monotonic() + 60
        while get_status(port) is None:
            assert process.poll() is None and time.monotonic() < deadline, "the daemon did not start serving"
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/", backups, manifests[0]
    finally:
        process.terminate()
        process.communicate(timeout=60)


@pytest.fixture(scope="module")
def dom(status_daemon, tmp_path_factory) -> str:
    url, _, _ = status_daemon
    directory = tmp_path_factory.mktemp("chromium-dom")
    page = chromium(directory / "profile", "--dump-dom", url).stdout
    (directory / "status-page.html").write_text(page, encoding="utf-8")  # kept for a look after a failure
    return page


def table_row(dom: str, kind: str, target: str) -> tuple[str, str]:
    """(colour class, the row's HTML) of a kind and target in the backups table."""
    match = re.search(rf'<tr class="(\w+)"><td>{kind}</td><td>{target}</td>(.*?)</tr>', dom, re.S)
    assert match, f"no row for {kind} {target}"
    return match[1], match[2]


class TestStatusPageInChromium:
    def test_each_kind_and_target_with_its_colour(self, dom):
        """Chromium's DOM has a row per kind and target, green, amber or red by age against the 24 h limit."""
        assert "pg-backup-sidecar" in dom and "Backups" in dom
        assert table_row(dom, "full", "all")[0] == "fresh"
        assert table_row(dom, "database", "authdb")[0] == "fresh"
        colour, ledger = table_row(dom, "database", "ledger")
        assert colour == "ageing" and "more than 75% of its limit used" in ledger and "local + offsite" in ledger
        colour, archive = table_row(dom, "database", "archive")
        assert colour == "stale" and "older than its limit" in archive and "1 d 16 h" in archive

    def test_newest_backup_its_age_size_and_chart(self, dom, status_daemon):
        """The full backup's row names the real artifact, its age and size, and charts the month's backups."""
        _, _, full = status_daemon
        _, row = table_row(dom, "full", "all")
        assert full.file in row and "of 1 d" in row and re.search(r"\d+ s of 1 d|\d+ min", row)
        assert re.search(r"\d+\.\d KiB|\d+ B", row) and "<td>local</td>" in row
        assert row.count("<circle") == HISTORY_DAYS + 1 and "<polyline" in row
        assert f"sizes of {HISTORY_DAYS + 1} backups over 30 days" in row

    def test_restore_test_and_next_runs(self, dom):
        """No restore test ran in this daemon yet; the next runs come from the schedules."""
        assert "No restore test since the daemon started" in dom
        schedule = dom.split('id="schedule"', 1)[1]
        assert "<td>full</td><td><time" in schedule and "2027-01-01 03:00 UTC" in schedule
        assert "<td>restore_test</td>" in schedule
        assert "recovery-window" not in dom

    def test_screenshot_shows_the_colours(self, status_daemon, tmp_path_factory):
        """The screenshot is a 1200x1600 PNG with the page's green, amber and red badges drawn."""
        url, _, _ = status_daemon
        directory = tmp_path_factory.mktemp("chromium-screenshot")
        screenshot = directory / "status-page.png"
        chromium(directory / "profile", f"--screenshot={screenshot}", "--window-size=1200,1600", url)
        assert screenshot.stat().st_size > 20_000
        image = read_png(screenshot)
        assert (image.width, image.height) == (1200, 1600)
        assert {GREEN, AMBER, RED} <= image.colours()
