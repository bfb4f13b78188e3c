"""The backup runner the daemon and `pgbackup backup` use, built in the test process so a test
can read its metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.backup.runner import BackupRunner
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.service import equipped_runner
from daemon.settings import Settings
from tests.support.postgres import PgServer


def equipped(source: PgServer, backup_dir: Path, **values: object) -> tuple[BackupRunner, Metrics]:
    """A runner with every feature installed, backing up ``source`` by docker exec into ``backup_dir``."""
    settings = Settings(postgres_container=source.name, postgres_user=source.user, backup_dir=backup_dir, **values)
    metrics = Metrics()
    runner, _ = equipped_runner(settings, metrics, HealthState(datetime.now(UTC), timedelta(hours=24)))
    return runner, metrics
