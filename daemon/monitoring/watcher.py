"""Metrics and health brought up to date with the manifests on disk: at start-up, and for
backups taken outside the scheduler (``pgbackup backup ...`` by hand next to the daemon),
by rescanning BACKUP_DIR whenever it has changed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Set
from datetime import datetime
from pathlib import Path

from daemon.logs import get_logger
from daemon.manifest import Manifest, scan_manifests
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics

log = get_logger(__name__)


def newest_success_by_kind(manifests: list[Manifest]) -> dict[str, datetime]:
    newest: dict[str, datetime] = {}
    for manifest in manifests:
        if manifest.kind not in newest or manifest.started_at > newest[manifest.kind]:
            newest[manifest.kind] = manifest.started_at
    return newest


class ManifestWatcher:
    """Rescans ``directory`` when its mtime changed: metrics reloaded, health told of successes
    from other processes (runs whose id is not in ``own_run_ids``), and ``found`` called with
    every manifest (the features' gauges). ``clock`` tells which manifests are dated in the future."""

    def __init__(self, directory: Path, metrics: Metrics, health: HealthState, own_run_ids: Set[str],
                 found: Callable[[list[Manifest]], None], clock: Callable[[], datetime],
                 signing_key: bytes | None = None):
        self.directory = directory
        self.signing_key = signing_key
        self.clock = clock
        self.metrics = metrics
        self.health = health
        self.own_run_ids = own_run_ids
        self.found = found
        self._seen_mtime: float | None = None
        self._lock = threading.Lock()
        self._manifests: list[Manifest] = []

    def manifests(self) -> list[Manifest]:
        """The manifests of the latest rescan (the status page reads them without scanning)."""
        with self._lock:
            return list(self._manifests)

    def refresh(self) -> list[Manifest]:
        with self._lock:
            try:
                mtime = self.directory.stat().st_mtime
            except OSError:
                return []
            if mtime == self._seen_mtime:
                return []
            self._seen_mtime = mtime
            scan = scan_manifests(self.directory, self.signing_key)
            for path, problem in scan.unreadable:
                log.warning("manifest_unreadable", file=path.name, error=problem)
            self._manifests = scan.manifests
            self.metrics.tampered_manifests.labels("local").set(len(scan.forged))
            now = self.clock()
            self.metrics.load_manifests(scan.manifests, now)
            taken_elsewhere = [m for m in scan.manifests if m.run_id not in self.own_run_ids]
            for kind, started in newest_success_by_kind(taken_elsewhere).items():
                self.health.run_finished_elsewhere(kind, started)
            # A future-dated success moved out of BACKUP_DIR no longer counts.
            self.health.settle_future_successes(newest_success_by_kind(scan.manifests), now)
            self.found(scan.manifests)
            return scan.manifests
