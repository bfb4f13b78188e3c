"""The shipped monitoring configuration, checked by the real Prometheus tools.

promtool (Debian package `prometheus`) and amtool (`prometheus-alertmanager`)
must be installed: a missing tool fails these tests, it never skips them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.prometheus_tools import REPO_ROOT, run_tool

MONITORING = REPO_ROOT / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERT_TESTS = MONITORING / "tests" / "alerts_test.yml"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
ALERTMANAGER_CONFIG = MONITORING / "alertmanager.yml"
SCRAPE_JOB = "pgbackup"


def load_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def alerting_rules() -> list[dict]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


def alert_cases() -> list[dict]:
    return [case for test in load_yaml(ALERT_TESTS)["tests"] for case in test.get("alert_rule_test", [])]


ALERT_NAMES = sorted({rule["alert"] for rule in alerting_rules()})


class TestPromtool:
    def test_rules_are_valid(self):
        """promtool accepts every rule in alerts.yml."""
        result = run_tool("promtool", "check", "rules", ALERTS)
        assert f"{len(alerting_rules())} rules found" in result.stdout

    def test_prometheus_config_is_valid_and_loads_the_rules(self):
        """promtool accepts prometheus.yml together with the rule file it loads."""
        result = run_tool("promtool", "check", "config", PROMETHEUS_CONFIG)
        assert "alerts.yml" in result.stdout

    def test_unit_tests_pass(self):
        """Every promtool unit test of the alerts passes."""
        result = run_tool("promtool", "test", "rules", ALERT_TESTS)
        assert "SUCCESS" in result.stdout


class TestAmtool:
    def test_alertmanager_config_is_valid(self):
        """amtool accepts alertmanager.yml."""
        run_tool("amtool", "check-config", ALERTMANAGER_CONFIG)


class TestPrometheusConfig:
    def test_scrapes_the_sidecar_as_the_job_the_rules_expect(self):
        """The shipped scrape job is named pgbackup, which PgBackupSidecarDown selects."""
        config = load_yaml(PROMETHEUS_CONFIG)
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        assert SCRAPE_JOB in jobs
        targets = [t for c in jobs[SCRAPE_JOB]["static_configs"] for t in c["targets"]]
        assert targets == ["pgbackup:9877"]
        assert any(f'job="{SCRAPE_JOB}"' in rule["expr"] for rule in alerting_rules())

    def test_loads_the_shipped_rules_and_sends_to_alertmanager(self):
        """prometheus.yml loads alerts.yml and points at the compose alertmanager service."""
        config = load_yaml(PROMETHEUS_CONFIG)
        assert config["rule_files"] == ["alerts.yml"]
        managers = config["alerting"]["alertmanagers"]
        assert [t for m in managers for c in m["static_configs"] for t in c["targets"]] == ["alertmanager:9093"]


class TestAlertDefinitions:
    def test_names_are_unique(self):
        """One rule per alert name, so each test case pins exactly one expression."""
        names = [rule["alert"] for rule in alerting_rules()]
        assert len(names) == len(set(names))

    @pytest.mark.parametrize("name", ALERT_NAMES)
    def test_has_severity_summary_and_description(self, name):
        """Each alert carries a severity label and summary and description annotations."""
        rule = next(rule for rule in alerting_rules() if rule["alert"] == name)
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"].strip()
        assert rule["annotations"]["description"].strip()

    @pytest.mark.parametrize("name", ALERT_NAMES)
    def test_is_tested_firing_and_not_firing(self, name):
        """Each alert has a unit test case where it fires and one where it does not."""
        cases = [case for case in alert_cases() if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in cases), f"no test case where {name} fires"
        assert any(not case.get("exp_alerts") for case in cases), f"no test case where {name} stays quiet"

    def test_every_tested_alert_exists(self):
        """No unit test case names an alert that alerts.yml lacks (it would pass vacuously)."""
        tested = {case["alertname"] for case in alert_cases()}
        assert tested <= set(ALERT_NAMES)

    def test_firing_annotations_name_kind_and_target(self):
        """Where a firing alert has kind and target labels, its summary and description name both."""
        checked = 0
        for case in alert_cases():
            for alert in case.get("exp_alerts") or []:
                labels, annotations = alert["exp_labels"], alert["exp_annotations"]
                for label in ("kind", "target"):
                    if label in labels:
                        checked += 1
                        assert labels[label] in annotations["summary"], (case["alertname"], label)
                        assert labels[label] in annotations["description"], (case["alertname"], label)
        assert checked > 0

    def test_covers_the_required_conditions(self):
        """Each metric the runbook relies on is watched by some alert."""
        expressions = "\n".join(rule["expr"] for rule in alerting_rules())
        for metric in (
            "pgbackup_last_success_timestamp_seconds",
            "pgbackup_kind_max_age_seconds",
            "pgbackup_restore_test_max_age_seconds",
            "pgbackup_last_run_success",
            "pgbackup_runs_total",
            "pgbackup_last_size_bytes",
            "pgbackup_min_size_bytes",
            "pgbackup_last_offsite_success_timestamp_seconds",
            "pgbackup_restore_test_last_success_timestamp_seconds",
            "pgbackup_restore_test_last_run_success",
            'up{job="pgbackup"}',
            "pgbackup_wal_receiver_up",
            "pgbackup_wal_recoverable_until_timestamp_seconds",
            "pgbackup_wal_max_lag_seconds",
            "pgbackup_wal_slot_retained_bytes",
            "pgbackup_wal_slot_retained_max_bytes",
            "pgbackup_wal_slot_status",
        ):
            assert metric in expressions, metric
