"""Hooks around real backup runs against a real PostgreSQL container: real shell commands,
a before-hook that fails the run, an after-hook whose failure keeps the backup, a hook killed
at its deadline with everything it started, and an environment without the sidecar's secrets."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import structlog

from daemon.hooks.command import OUTPUT_TAIL_BYTES, TERMINATE_GRACE_SECONDS, run_shell
from daemon.monitoring.metrics import Metrics
from tests.support.pgbackup_cli import artifact_paths, exec_env, log_events, pgbackup
from tests.support.runner import equipped

AWS_SECRET = "aws-secret-for-the-hook-test"
SHELL_OWN = {"PWD", "OLDPWD", "SHLVL", "_"}  # what /bin/sh itself adds to the environment of `env`
HOOK_VARIABLES = {"PATH", "HOME", "TZ", "PGBACKUP_KIND", "PGBACKUP_RUN_ID", "PGBACKUP_STATUS", "PGBACKUP_TARGET",
                  "PGBACKUP_FILES"}


@pytest.fixture
def dirs(tmp_path) -> tuple[Path, Path]:
    """BACKUP_DIR, and a directory for what the hooks write."""
    backups, written = tmp_path / "backups", tmp_path / "hooks"
    backups.mkdir()
    written.mkdir()
    return backups, written


def hook_failures(metrics: Metrics, hook: str) -> float:
    return metrics.registry.get_sample_value("pgbackup_hook_failures_total", {"hook": hook}) or 0


def environment_written(path: Path) -> dict[str, str]:
    """What `env -0 > PATH` wrote."""
    entries = [entry for entry in path.read_text().split("\0") if entry]
    return dict(entry.split("=", 1) for entry in entries)


def artifacts_in(backup_dir: Path) -> list[Path]:
    """Every file but the run logs and the lock file."""
    return [path for path in backup_dir.iterdir() if not path.name.endswith((".log", ".lock"))]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for a parent that does not reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class TestBeforeHook:
    def test_a_failing_before_hook_fails_the_run_and_says_so(self, small_source, recording_servers, dirs):
        """Exit 3 from HOOK_BEFORE_BACKUP: no dump, exit 1 naming the hook, its status and output; the
        on-failure hook and the /fail ping are told."""
        backups, written = dirs
        receiver = recording_servers()
        env = exec_env(
            small_source, backups, PING_URL=receiver.url("/check"),
            HOOK_BEFORE_BACKUP='echo "maintenance mode refused" >&2; exit 3',
            HOOK_ON_FAILURE=f"env -0 > {written}/on_failure.env",
        )
        result = pgbackup("backup", "full", env=env)
        message = "HOOK_BEFORE_BACKUP failed (exit status 3): maintenance mode refused"
        assert result.returncode == 1
        assert message in result.stderr
        assert artifact_paths(result) == [] and artifacts_in(backups) == []
        on_failure = environment_written(written / "on_failure.env")
        assert on_failure["PGBACKUP_STATUS"] == "failure" and on_failure["PGBACKUP_ERROR"] == f"all: {message}"
        assert [request.path for request in receiver.requests] == ["/check/start", "/check/fail"]
        assert message in receiver.requests[1].body

    def test_a_hook_that_outlives_its_timeout_is_killed_with_its_children(self, small_source, dirs):
        """A before-hook that ignores SIGTERM and leaves a child is killed, group and all, after
        HOOK_TIMEOUT_SECONDS and the grace period; the run fails saying so and takes nothing."""
        backups, written = dirs
        hook = f"trap '' TERM; sleep 300 & echo $! > {written}/child.pid; echo $$ > {written}/shell.pid; wait"
        runner, metrics = equipped(small_source, backups, hook_before_backup=hook, hook_timeout_seconds=1)
        started = time.monotonic()
        outcome = runner.run("full")
        elapsed = time.monotonic() - started
        (failure,) = outcome.failures
        assert failure.error == "HOOK_BEFORE_BACKUP did not finish within 1 s and was killed"
        assert outcome.artifacts == [] and artifacts_in(backups) == []
        assert elapsed < 1 + TERMINATE_GRACE_SECONDS + 10
        pids = [int((written / name).read_text()) for name in ("shell.pid", "child.pid")]
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in pids)
        assert hook_failures(metrics, "before_backup") == 1


class TestAfterHooks:
    def test_a_failing_after_hook_keeps_the_backup_and_is_counted(self, small_source, dirs):
        """Exit 5 from HOOK_AFTER_BACKUP is logged and counted; the run stays a success with its
        artifact, the hook was given the artifact's path, and HOOK_ON_FAILURE does not run."""
        backups, written = dirs
        runner, metrics = equipped(
            small_source, backups, hook_after_backup=f"env -0 > {written}/after.env; exit 5",
            hook_on_failure=f"touch {written}/on_failure.ran",
        )
        assert hook_failures(metrics, "after_backup") == 0  # the series exists before the first failure
        with structlog.testing.capture_logs() as logs:
            outcome = runner.run("full")
        assert outcome.ok
        (manifest,) = outcome.artifacts
        artifact = backups / manifest.file
        assert artifact.stat().st_size == manifest.size_bytes
        assert hook_failures(metrics, "after_backup") == 1
        (failed,) = [event for event in logs if event["event"] == "hook_failed"]
        assert failed["hook"] == "HOOK_AFTER_BACKUP" and failed["error"] == "HOOK_AFTER_BACKUP failed (exit status 5)"
        after = environment_written(written / "after.env")
        assert after["PGBACKUP_STATUS"] == "success" and after["PGBACKUP_FILES"] == str(artifact)
        assert after["PGBACKUP_KIND"] == "full" and after["PGBACKUP_TARGET"] == "all"
        assert not (written / "on_failure.ran").exists()


class TestHookEnvironment:
    def test_the_sidecars_secrets_never_reach_a_hook(self, small_source, recording_servers, dirs):
        """With POSTGRES_PASSWORD, AWS keys and a ping URL in the sidecar's environment, the hook sees
        only PATH, HOME, TZ and PGBACKUP_* (and what the shell adds), and none of the values."""
        backups, written = dirs
        receiver = recording_servers()
        env = exec_env(
            small_source, backups, POSTGRES_PASSWORD=small_source.password, AWS_ACCESS_KEY_ID="AKIAHOOKTEST",
            AWS_SECRET_ACCESS_KEY=AWS_SECRET, PING_URL=receiver.url("/ping/ping-secret-uuid"),
            TZ="Europe/Berlin", HOOK_AFTER_BACKUP=f"env -0 > {written}/after.env",
        )
        result = pgbackup("backup", "full", env=env)
        assert result.returncode == 0, result.stderr
        seen = environment_written(written / "after.env")
        assert set(seen) - SHELL_OWN == HOOK_VARIABLES
        assert seen["TZ"] == "Europe/Berlin" and seen["PATH"] == env["PATH"]
        text = str(seen)
        assert small_source.password not in text and AWS_SECRET not in text and "ping-secret-uuid" not in text

    def test_hook_output_is_logged_bounded_and_redacted(self, small_source, dirs):
        """A hook's output is logged, only its last OUTPUT_TAIL_BYTES, with a secret it printed masked."""
        backups, _ = dirs
        hook = f'head -c 100000 /dev/zero | tr "\\0" x; echo; echo "connected with {small_source.password}"'
        env = exec_env(small_source, backups, POSTGRES_PASSWORD=small_source.password, HOOK_AFTER_BACKUP=hook)
        result = pgbackup("backup", "full", env=env)
        assert result.returncode == 0, result.stderr
        (finished,) = [event for event in log_events(result.stderr) if event["event"] == "hook_finished"]
        assert finished["hook"] == "HOOK_AFTER_BACKUP"
        assert finished["output"].endswith("connected with ***")
        assert len(finished["output"].encode()) <= OUTPUT_TAIL_BYTES
        assert small_source.password not in result.stdout + result.stderr


class TestShellCommand:
    def test_a_stopping_daemon_kills_a_running_hook(self, tmp_path):
        """When the run is cancelled (the daemon stops), a hook is killed at once, not at its timeout."""
        cancel = threading.Event()
        threading.Timer(0.5, cancel.set).start()
        started = time.monotonic()
        result = run_shell(f"echo $$ > {tmp_path}/shell.pid; sleep 300", {"PATH": "/usr/bin:/bin"}, 300, cancel)
        assert result.returncode is None and result.stopped_because == "cancelled"
        assert time.monotonic() - started < 10
        assert not alive(int((tmp_path / "shell.pid").read_text()))

    def test_a_command_the_shell_cannot_find_fails_with_the_shells_status(self, tmp_path):
        """A command that does not exist is exit status 127 with the shell's message, not an exception."""
        result = run_shell("no-such-command-4711", {"PATH": "/usr/bin:/bin"}, 10)
        assert result.returncode == 127 and "no-such-command-4711" in result.output
