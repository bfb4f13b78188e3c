"""A smoke run of the benchmark (bench/, issue 7): tiny dataset, one round, end to end.

It proves the instrument still works against the current daemon; it asserts nothing
about speed (no timing assertions), only that every contender produced a number or an
explicit n/a with its reason, and that every target got a verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.pgbackup_cli import REPO_ROOT

VERDICTS = {"met", "NOT met", "n/a"}


class TestBenchmarkSmoke:
    def test_tiny_run_produces_a_complete_table(self, docker_client, postgres_image, tmp_path):
        """A 20 MB, one-round run gives every contender a number or a reason and every target a verdict."""
        markdown = tmp_path / "bench.md"
        command = [
            sys.executable, "-m", "bench", "--size", "20", "--small-size", "5", "--rounds", "1",
            "--idle-seconds", "3", "--variants", "default", "--profile-size", "5", "--pitr-size", "5",
            "--pitr-write-seconds", "3", "--pitr-tps-seconds", "2", "--markdown", str(markdown),
            "--work-dir", str(tmp_path / "work"),
        ]
        env = {**os.environ, "PGBACKUP_TEST_POSTGRES_IMAGE": postgres_image}
        run = subprocess.run(command, check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
                             stdin=subprocess.DEVNULL)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

        report = json.loads(markdown.with_suffix(".json").read_text())
        results = report["large"] + report["small"] + report["restore"]
        incomplete = [r["key"] for r in results
                      if r["median_seconds"] is None and not (r["unavailable"] or "").strip()]
        assert incomplete == []
        keys = {r["key"] for r in report["large"]}
        assert {"physical", "current", "pg_dump_fc"} <= keys
        assert any(key.startswith("full/") for key in keys) and any(key.startswith("databases/") for key in keys)
        assert {r["key"] for r in report["restore"]} >= {"restore/plain", "restore/direct"}
        assert report["small"]
        assert report["idle"]["seconds"] > 0 or report["idle"]["unavailable"]
        # The references measure the real server, so they always have a number.
        for reference in ("physical", "current", "pg_dump_fc"):
            assert next(r for r in report["large"] if r["key"] == reference)["median_seconds"] > 0
        assert report["dataset"]["raw_dump_bytes"] > 10_000_000

        # The other dataset profiles: each measured its references and the default backups.
        assert [profile["name"] for profile in report["profiles"]] == ["low", "high"]
        for profile in report["profiles"]:
            measured = {r["key"]: r["median_seconds"] for r in profile["results"]}
            assert {"physical", "current", "full/container-auto/default", "databases/container-auto/default"} \
                <= {key for key, seconds in measured.items() if seconds}, profile
            assert profile["raw_dump_bytes"] > 2_000_000

        # Point-in-time recovery: a base backup against its reference, the write throughput with and without
        # streaming, an RTO whose rows were checked, and an RPO measured after a real docker kill.
        pitr = report["pitr"]
        assert pitr["base_seconds"] > 0 and pitr["basebackup_null_seconds"] > 0 and pitr["base_bytes"] > 0, pitr
        assert {"without streaming", "WAL_STREAMING=on"} <= set(pitr["tps"]), pitr
        assert pitr["rto_seconds"] > 0 and pitr["rto_rows"] > 0, pitr
        assert pitr["rpo_commits_seen"] > 0 and pitr["rpo_commits_lost"] is not None, pitr

        for targets in (report["targets"], report["targets_round_two"]):
            assert targets and all(t["verdict"] in VERDICTS for t in targets)
            assert all(t["note"] for t in targets if t["verdict"] == "n/a")
        judged = {t["name"] for t in report["targets_round_two"] if t["verdict"] != "n/a"}
        assert {"profile low: full backup vs physical limit", "profile high: full backup vs physical limit",
                "per-database backups (container-auto) vs full backup"} <= judged
        text = markdown.read_text()
        assert "## Targets of issue 7" in text and "physical limit" in text
        assert "## Targets of issue 16" in text and "## Dataset profiles" in text and "## S3 upload cost" in text
        assert "## Point-in-time recovery" in text
