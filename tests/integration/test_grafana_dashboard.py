"""The Grafana dashboard of the monitoring profile (monitoring/grafana/): every panel's PromQL
evaluated by the real promtool against a series fixture, and its provisioning wired to compose.

Each expression runs once per case of monitoring/tests/dashboard_series.yml, with the
dashboard's variables replaced as Grafana replaces them, and must return exactly the samples
the case expects. promtool (Debian package `prometheus`) must be installed: a missing tool
fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.support.prometheus_tools import REPO_ROOT, run_tool

GRAFANA = REPO_ROOT / "monitoring" / "grafana"
DASHBOARD = GRAFANA / "dashboard.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "pgbackup.yml"
SERIES_FIXTURE = REPO_ROOT / "monitoring" / "tests" / "dashboard_series.yml"
COMPOSE_FILE = REPO_ROOT / "compose.yaml"
MOUNTED_AT = "/etc/pgbackup-grafana"  # where compose mounts monitoring/grafana


def load_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels() -> list[dict]:
    """Every panel that shows data (rows hold none), nested ones included."""
    found = []
    for panel in dashboard()["panels"]:
        found += [panel] if panel["type"] != "row" else []
        found += [nested for nested in panel.get("panels", []) if nested["type"] != "row"]
    return found


def queries() -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL) of every query of every panel."""
    return [(panel["title"], target["refId"], target["expr"]) for panel in panels() for target in panel["targets"]]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """The expression as Grafana sends it: each $name (or ${name}) replaced by its value."""
    def value(match: re.Match) -> str:
        name = match["braced"] or match["plain"]
        assert name in variables, f"no value for ${name} in the fixture's case"
        return variables[name]

    return re.sub(r"\$(?:\{(?P<braced>\w+)\}|(?P<plain>\w+))", value, expr)


def promtool_tests(fixture: dict) -> dict:
    """A promtool unit test file: per case one test group with one promql_expr_test per query."""
    groups = []
    for case in fixture["cases"]:
        variables = {name: str(value) for name, value in case["variables"].items()}
        groups.append({
            "name": case["name"],
            "interval": fixture["interval"],
            "input_series": fixture["input_series"],
            "promql_expr_test": [
                {"expr": substitute(expr, variables), "eval_time": fixture["eval_time"],
                 "exp_samples": case["expected"][title][ref_id]}
                for title, ref_id, expr in queries()
            ],
        })
    return {"rule_files": [], "tests": groups}


class TestPanelExpressions:
    def test_every_expression_returns_the_expected_samples(self, tmp_path):
        """promtool evaluates each panel's expression in each case and gets exactly the expected samples."""
        test_file = tmp_path / "dashboard_test.yml"
        test_file.write_text(yaml.safe_dump(promtool_tests(load_yaml(SERIES_FIXTURE)), sort_keys=False))
        result = run_tool("promtool", "test", "rules", test_file)
        assert "SUCCESS" in result.stdout

    def test_every_query_has_an_expectation_in_every_case(self):
        """No panel or query escapes the fixture, and the fixture names no panel the dashboard lacks."""
        wanted = {(title, ref_id) for title, ref_id, _ in queries()}
        for case in load_yaml(SERIES_FIXTURE)["cases"]:
            given = {(title, ref_id) for title, targets in case["expected"].items() for ref_id in targets}
            assert given == wanted, case["name"]

    def test_no_expression_is_empty_in_the_first_case(self):
        """In the first case every query returns data: a query that matches nothing cannot pass unseen."""
        expected = load_yaml(SERIES_FIXTURE)["cases"][0]["expected"]
        empty = [(title, ref_id) for title, ref_id, _ in queries() if not expected[title][ref_id]]
        assert empty == []

    def test_a_wrong_expectation_fails(self, tmp_path):
        """The check can fail: one expected value changed makes promtool report a failure."""
        fixture = load_yaml(SERIES_FIXTURE)
        title, ref_id, _ = queries()[0]
        fixture["cases"][0]["expected"][title][ref_id][0]["value"] += 1
        test_file = tmp_path / "wrong_test.yml"
        test_file.write_text(yaml.safe_dump(promtool_tests(fixture), sort_keys=False))
        with pytest.raises(AssertionError, match="FAILED"):
            run_tool("promtool", "test", "rules", test_file)

    def test_each_panel_filters_by_the_selected_sidecar(self):
        """Every expression selects its series by $instance, so one dashboard serves several sidecars."""
        selectors = re.compile(r"\b(pgbackup_\w+|up)\{([^}]*)\}")
        for title, ref_id, expr in queries():
            matches = selectors.findall(expr)
            assert matches, (title, ref_id)
            for metric, matchers in matches:
                assert 'instance=~"$instance"' in matchers, (title, ref_id, metric)


class TestDashboard:
    def test_covers_every_subject(self):
        """Freshness, sizes, durations, failures, offsite copies and restore tests each have a panel."""
        expressions = "\n".join(expr for _, _, expr in queries())
        for metric in ("pgbackup_last_success_timestamp_seconds", "pgbackup_kind_max_age_seconds",
                       "pgbackup_last_size_bytes", "pgbackup_last_duration_seconds", "pgbackup_runs_total",
                       "pgbackup_last_run_success", "pgbackup_last_offsite_success_timestamp_seconds",
                       "pgbackup_s3_upload_failures_total", "pgbackup_restore_test_duration_seconds",
                       "pgbackup_restore_test_last_run_success",
                       "pgbackup_restore_test_last_success_timestamp_seconds"):
            assert metric in expressions, metric

    def test_panels_use_the_provisioned_data_source(self):
        """Every panel and query names the data source provisioning creates, by its uid."""
        (source,) = load_yaml(DATASOURCES)["datasources"]
        assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
        for panel in panels():
            for user in (panel, *panel["targets"]):
                assert user["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        (variable,) = dashboard()["templating"]["list"]
        assert variable["name"] == "instance" and variable["datasource"]["uid"] == source["uid"]

    def test_layout_is_valid(self):
        """Unique panel ids and titles, each panel inside Grafana's 24 columns."""
        everything = dashboard()["panels"]
        assert len({panel["id"] for panel in everything}) == len(everything)
        assert len({panel["title"] for panel in panels()}) == len(panels())
        for panel in everything:
            position = panel["gridPos"]
            assert position["x"] >= 0 and position["w"] > 0 and position["x"] + position["w"] <= 24, panel["title"]


class TestProvisioning:
    def test_compose_runs_grafana_in_the_monitoring_profile(self):
        """The grafana service belongs to the monitoring profile, mounts monitoring/grafana read-only,
        takes its image from GRAFANA_IMAGE and listens on loopback only."""
        service = load_yaml(COMPOSE_FILE)["services"]["grafana"]
        assert service["profiles"] == ["monitoring"]
        assert service["image"].startswith("${GRAFANA_IMAGE:-grafana/grafana:11.")
        assert f"./monitoring/grafana:{MOUNTED_AT}:ro" in service["volumes"]
        assert service["environment"]["GF_PATHS_PROVISIONING"] == f"{MOUNTED_AT}/provisioning"
        assert service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{MOUNTED_AT}/dashboard.json"
        assert all(port.startswith("127.0.0.1:") for port in service["ports"])

    def test_dashboard_provider_reads_the_mounted_dashboard(self):
        """The provider's path is where compose mounts dashboard.json."""
        (provider,) = load_yaml(DASHBOARD_PROVIDERS)["providers"]
        assert provider["type"] == "file" and provider["options"]["path"] == MOUNTED_AT
        assert (GRAFANA / DASHBOARD.relative_to(GRAFANA)).is_file()
