"""The status page: what it reports (status.py) and how it renders it (statuspage.py)."""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timedelta, timezone

from daemon.manifest import Manifest, write_manifest
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.monitoring.status import (
    AGEING,
    FRESH,
    STALE,
    UNWATCHED,
    NextRun,
    RecoveryWindow,
    RestoreTestStatus,
    SizePoint,
    StatusSource,
    build_report,
    failed_targets,
    freshness,
    next_runs,
    restore_test_status,
)
from daemon.monitoring.statuspage import (
    CHART_HEIGHT,
    CHART_WIDTH,
    CONTENT_SECURITY_POLICY,
    format_duration,
    format_size,
    render_page,
    size_chart_svg,
)
from daemon.monitoring.watcher import ManifestWatcher
from daemon.schedule import parse_crontab
from daemon.verify.restore_test import RestoreTestRun, record_metrics
from daemon.verify.throwaway import TargetResult

NOW = datetime(2026, 12, 5, 7, 30, tzinfo=timezone.utc)
DAY = timedelta(days=1)
DAILY = {"full": 86400.0, "database": 86400.0}


def manifest(kind: str, target: str, age: timedelta, size: int = 1000, offsite: dict | None = None) -> Manifest:
    started = NOW - age
    return Manifest(kind, target, f"{kind}_{target}_{started:%Y%m%d%H%M%S}.sql.gz", size, "0" * 64, started,
                    started + timedelta(seconds=30), "15.4", "plain", "gzip", offsite=offsite or {})


def row(report, kind: str, target: str):
    return next(r for r in report.backups if (r.kind, r.target) == (kind, target))


class TestFreshness:
    def test_young_backup_is_fresh(self):
        """A backup under three quarters of its limit is green."""
        assert freshness(timedelta(hours=17), DAY, False) == (FRESH, "")

    def test_backup_near_its_limit_is_ageing(self):
        """Past three quarters of the limit it turns amber, saying why."""
        assert freshness(timedelta(hours=19), DAY, False) == (AGEING, "more than 75% of its limit used")

    def test_backup_over_its_limit_is_stale(self):
        """Older than the limit (what /healthz calls overdue) is red."""
        assert freshness(timedelta(hours=25), DAY, False)[0] == STALE

    def test_a_failed_latest_run_makes_a_fresh_backup_amber(self):
        """The newest backup is still young, but the latest run of its target failed."""
        assert freshness(timedelta(hours=1), DAY, True) == (AGEING, "the latest run failed")

    def test_unscheduled_kind_has_no_limit(self):
        """A kind without an allowance (taken by hand) is grey, however old."""
        assert freshness(timedelta(days=400), None, False)[0] == UNWATCHED


class TestBuildReport:
    def test_newest_backup_per_kind_and_target_with_age_limit_and_location(self):
        """Each kind and target shows its newest backup, its age against the kind's limit, and where it is."""
        manifests = [manifest("full", "all", timedelta(hours=2), offsite={"status": "complete"}),
                     manifest("full", "all", timedelta(hours=26)),
                     manifest("database", "apidb", timedelta(hours=20), offsite={"status": "failed"})]
        report = build_report(manifests, DAILY, set(), set(), NOW)
        full = row(report, "full", "all")
        assert full.newest is manifests[0] and full.age == timedelta(hours=2) and full.limit == DAY
        assert (full.freshness, full.location) == (FRESH, "local + offsite")
        database = row(report, "database", "apidb")
        assert (database.freshness, database.location) == (AGEING, "local; offsite copy failed")

    def test_sizes_cover_thirty_days_oldest_first(self):
        """The chart's points are the backups of the last 30 days, oldest first; older ones are left out."""
        manifests = [manifest("full", "all", timedelta(days=days), size=days) for days in (1, 40, 29, 3)]
        sizes = row(build_report(manifests, DAILY, set(), set(), NOW), "full", "all").sizes
        assert [point.size_bytes for point in sizes] == [29, 3, 1]

    def test_future_dated_backup_is_stale(self):
        """A backup dated in the future has no believable age: red, and the note says to check the clock."""
        report = build_report([manifest("full", "all", -timedelta(days=2))], DAILY, set(), set(), NOW)
        full = row(report, "full", "all")
        assert full.freshness == STALE and "future" in full.note and full.sizes == []

    def test_failing_target_without_any_backup_is_listed(self):
        """A target whose runs fail and that never succeeded still gets a red row."""
        report = build_report([], DAILY, {("database", "no_such_db")}, set(), NOW)
        failing = row(report, "database", "no_such_db")
        assert failing.newest is None and failing.freshness == STALE and failing.note == "the latest run failed"

    def test_scheduled_kind_without_backups(self):
        """A scheduled kind with nothing yet is amber, red once /healthz says it is overdue."""
        assert row(build_report([], DAILY, set(), set(), NOW), "full", "").freshness == AGEING
        assert row(build_report([], DAILY, set(), {"full"}, NOW), "full", "").freshness == STALE

    def test_unscheduled_kind_is_grey(self):
        """pre_migration backups have no allowance: shown without a limit."""
        report = build_report([manifest("pre_migration", "all", timedelta(days=90))], DAILY, set(), set(), NOW)
        assert row(report, "pre_migration", "all").freshness == UNWATCHED


class TestNextRuns:
    def test_soonest_first_and_disabled_last(self):
        """Each job's next fire time after now, soonest first; a job whose schedule is off comes last."""
        runs = next_runs([("retention", parse_crontab("30 4 * * *", timezone.utc)), ("tables", None),
                          ("full", parse_crontab("0 3 * * *", timezone.utc))], NOW)
        assert [(run.job, run.at) for run in runs] == [
            ("full", datetime(2026, 12, 6, 3, 0, tzinfo=timezone.utc)),
            ("retention", datetime(2026, 12, 6, 4, 30, tzinfo=timezone.utc)),
            ("tables", None),
        ]


class TestFromMetrics:
    def test_no_restore_test_yet(self):
        """Before the first restore test the page says there was none."""
        assert restore_test_status(Metrics()) == RestoreTestStatus(ran=False)

    def test_latest_restore_test_and_its_rto(self):
        """The outcome, the measured time and each target's last success come from the restore test's metrics."""
        metrics = Metrics()
        record_metrics(metrics, RestoreTestRun([TargetResult("all", "backup_all.sql.gz", True, "")], seconds=83.2))
        status = restore_test_status(metrics)
        assert status.ran and status.passed and status.seconds == 83.2
        assert list(status.last_success) == ["all"]
        record_metrics(metrics, RestoreTestRun([], error="no backup", seconds=1.0))
        assert not restore_test_status(metrics).passed

    def test_failed_targets_are_those_whose_latest_run_failed(self):
        """A failure followed by a success of the same target is no longer failed."""
        metrics = Metrics()
        metrics.record_failure("database", "authdb")
        metrics.record_failure("database", "apidb")
        metrics.record_success(manifest("database", "apidb", timedelta(hours=1)))
        assert failed_targets(metrics) == {("database", "authdb")}

    def test_source_reports_the_daemons_state(self):
        """StatusSource joins manifests, allowances, /healthz problems, metrics and the schedule."""
        health = HealthState(NOW - DAY, DAY)
        daily = parse_crontab("0 3 * * *", timezone.utc)
        health.schedule("full", daily, None)
        health.scheduler_running = True
        health.set_problem("backup_dir_unwritable", "BACKUP_DIR is read-only")
        source = StatusSource(lambda: [manifest("full", "all", timedelta(hours=3))], health, Metrics(),
                              [("full", daily)])
        report = source.report(NOW)
        assert not report.healthy and report.problems == ["BACKUP_DIR is read-only"]
        assert row(report, "full", "all").freshness == FRESH
        assert report.next_runs == [NextRun("full", datetime(2026, 12, 6, 3, 0, tzinfo=timezone.utc))]


class TestWatcherLastScan:
    def test_the_page_reads_the_last_scan_without_rescanning(self, tmp_path):
        """manifests() returns the latest rescan's manifests, also when refresh() found BACKUP_DIR unchanged."""
        write_manifest(tmp_path, manifest("full", "all", timedelta(hours=1)))
        watcher = ManifestWatcher(tmp_path, Metrics(), HealthState(NOW, DAY), set(), lambda found: None, lambda: NOW)
        assert watcher.manifests() == []
        assert len(watcher.refresh()) == 1
        assert watcher.refresh() == []  # nothing changed: no rescan
        assert [m.kind for m in watcher.manifests()] == ["full"]


class TestFormatting:
    def test_durations(self):
        """Two units at most, a zero second unit left out."""
        assert [format_duration(timedelta(seconds=s)) for s in (12, 270, 3600, 18720, 86400, 183600)] == [
            "12 s", "4 min 30 s", "1 h", "5 h 12 min", "1 d", "2 d 3 h"]

    def test_sizes(self):
        assert [format_size(n) for n in (512, 1536, 5 * 2**20)] == ["512 B", "1.5 KiB", "5.0 MiB"]


class TestSizeChart:
    def test_a_point_per_backup_newest_on_the_right(self):
        """One dot per backup and a line through them; time runs left to right, size bottom to top."""
        points = [SizePoint(NOW - timedelta(days=20), 100), SizePoint(NOW - timedelta(hours=1), 400)]
        svg = ElementTree.fromstring(size_chart_svg(points, NOW))
        namespace = "{http://www.w3.org/2000/svg}"
        circles = svg.findall(f"{namespace}circle")
        assert len(circles) == 2 and svg.find(f"{namespace}polyline") is not None
        (x_old, y_old), (x_new, y_new) = ((float(c.get("cx")), float(c.get("cy"))) for c in circles)
        assert 0 < x_old < x_new <= CHART_WIDTH and 0 < y_new < y_old <= CHART_HEIGHT
        assert "2 backups over 30 days: 100 B to 400 B" in svg.get("aria-label")

    def test_no_backups_says_so(self):
        """An empty chart draws no line and says there are no backups."""
        svg = size_chart_svg([], NOW)
        assert "<polyline" not in svg and "<circle" not in svg and "no backups" in svg


class TestRenderPage:
    def report(self, target: str = "apidb"):
        manifests = [manifest("database", target, timedelta(hours=2), size=2048),
                     manifest("full", "all", timedelta(hours=30))]
        return build_report(
            manifests, DAILY, set(), set(), NOW, healthy=False, problems=["BACKUP_DIR is read-only"],
            restore_test=RestoreTestStatus(True, True, 83.0, {"all": NOW - 4 * DAY}),
            next_runs=[NextRun("full", NOW + timedelta(hours=20)), NextRun("tables", None)],
            recovery_window=RecoveryWindow(NOW - 7 * DAY, NOW - timedelta(seconds=30)),
        )

    def test_shows_every_section(self):
        """Backups with their colours, the restore test and its RTO, the next runs and the recovery window."""
        page = render_page(self.report())
        assert '<tr class="fresh"><td>database</td><td>apidb</td>' in page
        assert '<tr class="stale"><td>full</td><td>all</td>' in page
        assert "2.0 KiB" in page and "1 d 6 h" in page and " of 1 d" in page
        assert "Unhealthy" in page and "BACKUP_DIR is read-only" in page
        assert "passed" in page and "(RTO): <strong>1 min 23 s</strong>" in page
        assert "2026-12-06 03:30 UTC" in page and "off" in page
        assert "Recoverable from <time" in page

    def test_recovery_window_only_when_there_is_one(self):
        """Without point-in-time recovery the page has no recovery window section."""
        report = self.report()
        page = render_page(build_report([], DAILY, set(), set(), NOW, next_runs=report.next_runs))
        assert "recovery-window" not in page and "No restore test since the daemon started" in page

    def test_every_value_is_escaped(self):
        """A hostile name (a table target from a database) is shown as text, never as markup."""
        page = render_page(self.report(target='<script>alert("x")</script>'))
        assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page

    def test_nothing_to_load_and_nothing_to_trigger(self):
        """No script, stylesheet, image, frame, form or button: the page loads nothing and changes nothing."""
        page = render_page(self.report())
        for tag in ("<script", "<link", "<img", "<iframe", "<form", "<button", "<input", " src=", " href="):
            assert tag not in page.lower(), tag
        assert not re.search(r"<[^>]*\son\w+=", page), "an event handler attribute"

    def test_the_policy_allows_exactly_the_pages_style(self):
        """The Content-Security-Policy's style hash is that of the page's one style block."""
        styles = re.findall(r"<style>(.*?)</style>", render_page(self.report()), re.S)
        assert len(styles) == 1
        digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
        assert f"style-src 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
        assert CONTENT_SECURITY_POLICY.startswith("default-src 'none';")
