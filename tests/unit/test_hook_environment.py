"""What a hook is told, and that it is told nothing else: no variable of the sidecar's own
environment besides PATH and HOME reaches it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.backup.outcome import RunOutcome, TargetFailure
from daemon.hooks.command import CommandResult
from daemon.hooks.environment import (
    ERROR_LIMIT,
    FAILURE,
    FALLBACK,
    STARTING,
    SUCCESS,
    finished_context,
    hook_environment,
    starting_context,
)
from daemon.hooks.install import failure_reason
from daemon.logs import REDACTED, redactor
from daemon.manifest import Manifest

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=ZoneInfo("UTC"))
SIDECAR = {
    "PATH": "/opt/venv/bin:/usr/bin:/bin", "HOME": "/home/pgbackup", "POSTGRES_PASSWORD": "pw-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-secret", "WEBHOOK_URL": "https://hooks/secret", "LD_PRELOAD": "/evil.so",
}


def manifest(target: str, file: str) -> Manifest:
    return Manifest(kind="database", target=target, file=file, size_bytes=10, sha256="ab", started_at=T0,
                    finished_at=T0, server_version="15.8", format="custom", compression="pg_dump")


class TestHookEnvironment:
    def test_only_the_allow_list_and_pgbackup_variables(self):
        """PATH and HOME come from the sidecar, TZ from the settings; no secret or other variable passes."""
        outcome = RunOutcome("run1", "database", T0)
        env = hook_environment(starting_context(outcome, ["authdb", "apidb"]), SIDECAR, "Europe/Berlin")
        assert env == {
            "PATH": "/opt/venv/bin:/usr/bin:/bin", "HOME": "/home/pgbackup", "TZ": "Europe/Berlin",
            "PGBACKUP_KIND": "database", "PGBACKUP_RUN_ID": "run1", "PGBACKUP_STATUS": STARTING,
            "PGBACKUP_TARGET": "authdb\napidb", "PGBACKUP_FILES": "",
        }

    def test_path_and_home_have_fallbacks(self):
        """A sidecar started without PATH or HOME still gives the hook a usable PATH and HOME."""
        env = hook_environment(starting_context(RunOutcome("r", "full", T0), ["all"]), {}, "UTC")
        assert env["PATH"] == FALLBACK["PATH"] and env["HOME"] == "/"

    def test_success_lists_the_files_one_per_line(self):
        """After a good run PGBACKUP_FILES holds each artifact's absolute path, one per line, and no error."""
        outcome = RunOutcome("run2", "database", T0, artifacts=[
            manifest("authdb", "authdb_20261126_030000.dump"), manifest("apidb", "apidb_20261126_030000.dump")])
        env = hook_environment(finished_context(outcome, Path("/backups")), SIDECAR, "UTC")
        assert env["PGBACKUP_STATUS"] == SUCCESS
        assert env["PGBACKUP_FILES"].splitlines() == ["/backups/authdb_20261126_030000.dump",
                                                      "/backups/apidb_20261126_030000.dump"]
        assert env["PGBACKUP_TARGET"] == "authdb\napidb" and "PGBACKUP_ERROR" not in env

    def test_failure_names_each_failed_target_and_is_bounded(self):
        """After a failed run PGBACKUP_ERROR says which target failed and why, cut to ERROR_LIMIT characters."""
        outcome = RunOutcome("run3", "database", T0, artifacts=[manifest("authdb", "authdb_1.dump")],
                             failures=[TargetFailure("database", "apidb", "pg_dump failed " + "x" * 5000)])
        env = hook_environment(finished_context(outcome, Path("/backups")), SIDECAR, "UTC")
        assert env["PGBACKUP_STATUS"] == FAILURE and env["PGBACKUP_FILES"] == "/backups/authdb_1.dump"
        assert env["PGBACKUP_ERROR"].startswith("apidb: pg_dump failed") and len(env["PGBACKUP_ERROR"]) == ERROR_LIMIT

    def test_a_run_without_any_backup_is_a_failure(self):
        """A run that produced nothing and recorded no failure still tells the hook it failed."""
        env = hook_environment(finished_context(RunOutcome("r", "full", T0), Path("/b")), SIDECAR, "UTC")
        assert env["PGBACKUP_STATUS"] == FAILURE and env["PGBACKUP_ERROR"] == "the run produced no backup"


class TestFailureReason:
    def test_exit_status_and_last_output_line(self):
        """A failed hook's reason names the variable, its exit status and its last line of output."""
        result = CommandResult(3, "checking\nmaintenance mode refused", 0.1)
        assert failure_reason("HOOK_BEFORE_BACKUP", result, 300) == (
            "HOOK_BEFORE_BACKUP failed (exit status 3): maintenance mode refused")

    def test_timeout(self):
        """A hook killed at its deadline says so, with the deadline."""
        result = CommandResult(None, "", 2.0, stopped_because="timeout")
        assert failure_reason("HOOK_AFTER_BACKUP", result, 2) == "HOOK_AFTER_BACKUP did not finish within 2 s and was killed"

    def test_secrets_in_the_output_are_masked(self, monkeypatch):
        """A hook that prints a secret does not put it into the run's failure message."""
        monkeypatch.setattr(redactor, "secrets", ["correct-horse-battery"])
        reason = failure_reason("HOOK_ON_FAILURE", CommandResult(1, "token correct-horse-battery bad", 0.1), 300)
        assert "correct-horse-battery" not in reason and REDACTED in reason
