"""Running the real `pgbackup` command (python -m daemon) the way a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.postgres import PgServer

REPO_ROOT = Path(__file__).resolve().parents[2]


def base_env(backup_dir: Path, **settings: str) -> dict[str, str]:
    """A clean environment: only PATH/HOME from the test process, then the given settings."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update({"BACKUP_DIR": str(backup_dir), "LOG_LEVEL": "INFO", "METRICS_ADDRESS": "127.0.0.1"})
    env.update(settings)
    return env


def exec_env(server: PgServer, backup_dir: Path, **settings: str) -> dict[str, str]:
    """Settings for the docker exec method against ``server``."""
    return base_env(backup_dir, POSTGRES_CONTAINER=server.name, POSTGRES_USER=server.user, **settings)


def tcp_env(server: PgServer, backup_dir: Path, **settings: str) -> dict[str, str]:
    """Settings for the TCP method against ``server``'s published port."""
    return base_env(
        backup_dir, POSTGRES_HOST=server.host, POSTGRES_PORT=str(server.port), POSTGRES_USER=server.user,
        POSTGRES_PASSWORD=server.password or "", **settings,
    )


def pgbackup(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``pgbackup ARGS`` to completion and return its result (text stdout/stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


def start_pgbackup(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """Start ``pgbackup ARGS`` in the background (stdout and stderr captured as text)."""
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", *args], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )


def log_events(text: str) -> list[dict]:
    """The JSON log lines of a run, parsed (other lines are skipped)."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def artifact_paths(result: subprocess.CompletedProcess) -> list[Path]:
    """The artifact paths a `pgbackup backup ...` printed on stdout."""
    return [Path(line) for line in result.stdout.splitlines() if line.strip()]
