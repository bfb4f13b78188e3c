"""The WAL monitor: every POLL_INTERVAL_SECONDS it asks the server where its WAL and the slot
are, and publishes receive lag, retained WAL, the slot's ``wal_status`` and the time up to which
recovery is possible (``lag``), as metrics and as /healthz problems. A failed poll (the database
restarting, the network gone) is logged and counted, never fatal; the connection is made again
at the next one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
from prometheus_client import Gauge

from daemon.logs import get_logger
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.sources.connect import connect
from daemon.sources.postgres import PostgresServer
from daemon.wal.archive import spool_dir
from daemon.wal.lag import SlotReading, parse_reading, recoverable_until, retained_limit, retention_problem, rpo_problem
from daemon.wal.receiver import newest_wal_time

log = get_logger(__name__)

POLL_INTERVAL_SECONDS = 15.0
RPO_PROBLEM = "wal_rpo_above_limit"
RETENTION_PROBLEM = "wal_slot_retention_high"
WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")

# One row (the slot name is validated by Settings: [a-z0-9_]); NULLs as empty fields, since
# concat_ws would leave them out. The receiver's row in pg_stat_replication is the one holding the slot.
_READING_SQL = """
SELECT concat_ws('|',
  pg_current_wal_lsn(),
  coalesce(s.restart_lsn::text, ''),
  coalesce(r.flush_lsn::text, ''),
  coalesce(s.wal_status, ''),
  coalesce(s.safe_wal_size::text, ''),
  (SELECT setting FROM pg_settings WHERE name = 'max_slot_wal_keep_size'),
  s.slot_name IS NOT NULL,
  coalesce(s.active, false))
FROM (SELECT 1) AS one
LEFT JOIN pg_replication_slots AS s ON s.slot_name = '{slot}'
LEFT JOIN pg_stat_replication AS r ON r.pid = s.active_pid
"""


def read_slot(sql: PostgresServer, slot: str) -> SlotReading:
    """The server's WAL position, the slot's and the receiver's, in one query."""
    return parse_reading(sql.query(_READING_SQL.format(slot=slot))[0])


def last_received(backup_dir: Path) -> float | None:
    """When WAL last arrived in the spool; None when unknown (an archive pass may move a segment away
    while its time is read: the next poll reads it again)."""
    try:
        return newest_wal_time(spool_dir(backup_dir))
    except OSError:
        return None


@dataclass
class WalMonitor:
    settings: Settings
    metrics: Metrics
    health: HealthState
    client: docker.DockerClient | None = None
    clock: Callable[[], float] = time.time
    interval: float = POLL_INTERVAL_SECONDS
    _server: PostgresServer | None = field(default=None, init=False)
    _last_caught_up: float | None = field(default=None, init=False)
    _recoverable: float | None = field(default=None, init=False)

    @property
    def slot(self) -> str:
        return self.settings.wal_slot_name

    def start(self, cancel: threading.Event) -> threading.Thread:
        self.metrics.wal_max_lag.labels(self.slot).set(self.settings.wal_max_lag_seconds)
        thread = threading.Thread(target=self._loop, args=(cancel,), name="wal-monitor", daemon=True)
        thread.start()
        return thread

    def _loop(self, cancel: threading.Event) -> None:
        while True:
            try:
                self.poll()
            except Exception:  # a bug: logged, and the next poll still comes
                log.exception("wal_monitor_poll_crashed")
            if cancel.wait(self.interval):
                return

    def poll(self) -> SlotReading | None:
        """One look at the server; the metrics and /healthz follow it. None when the server did not answer."""
        checked_at = self.clock()  # before the query: every commit before it is at or below the position read
        try:
            reading = read_slot(self._connection(), self.slot)
        except Exception as error:  # noqa: BLE001 - any failure: logged, counted, connected again next time
            self._server = None
            self.metrics.wal_monitor_failures.inc()
            log.warning("wal_monitor_failed", error=str(error))
            self._judge_rpo()  # the last known point ages: a server that cannot be asked cannot confirm it
            return None
        self._publish(reading, checked_at)
        return reading

    def _connection(self) -> PostgresServer:
        if self._server is None:
            self._server = connect(self.settings, self.client).server
        return self._server

    def _publish(self, reading: SlotReading, checked_at: float) -> None:
        lag, retained = reading.lag_bytes, reading.retained_bytes
        if lag == 0:
            self._last_caught_up = checked_at
        self._set_or_remove(self.metrics.wal_receive_lag, lag)
        self._set_or_remove(self.metrics.wal_slot_retained, retained)
        self._set_or_remove(self.metrics.wal_slot_safe, reading.safe_wal_size)
        limit = retained_limit(self.settings.wal_slot_retained_max_bytes, reading.max_slot_wal_keep_size_mb)
        self.metrics.wal_slot_retained_max.labels(self.slot).set(limit)
        for status in WAL_STATUSES:
            self.metrics.wal_slot_status.labels(self.slot, status).set(int(reading.wal_status == status))
        received = last_received(self.settings.backup_dir)
        recoverable = recoverable_until(lag, checked_at, self._last_caught_up, received)
        if recoverable is not None:
            self._recoverable = max(recoverable, self._recoverable or 0)  # never moves back
            self.metrics.wal_recoverable_until.labels(self.slot).set(self._recoverable)
        self._judge_rpo()
        self.health.set_problem(RETENTION_PROBLEM, retention_problem(reading, limit))
        if not reading.exists:
            log.warning("wal_slot_missing", slot=self.slot)

    def _judge_rpo(self) -> None:
        self.health.set_problem(RPO_PROBLEM, rpo_problem(self._recoverable, self.clock(),
                                                         self.settings.wal_max_lag_seconds))

    def _set_or_remove(self, gauge: Gauge, value: int | None) -> None:
        """A figure the server does not know (no slot, an unlimited keep size) has no series."""
        if value is None:
            try:
                gauge.remove(self.slot)
            except KeyError:
                pass
        else:
            gauge.labels(self.slot).set(value)


def start_monitor(settings: Settings, metrics: Metrics, health: HealthState, cancel: threading.Event,
                  client: docker.DockerClient | None = None) -> threading.Thread:
    return WalMonitor(settings, metrics, health, client).start(cancel)
