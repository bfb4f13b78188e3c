"""The WAL receiver: ``pg_receivewal --no-loop --synchronous`` on the slot, supervised.

Each start resolves the server's address again and makes sure the slot exists; while it runs,
a pass every ARCHIVE_INTERVAL_SECONDS moves completed segments into the archive
(``archive.archive_completed``) and publishes when WAL last arrived. When it exits it is
counted, ``/healthz`` reports streaming as stopped with the reason, and it starts again after a
growing wait (``backoff``). The slot keeps the server's WAL meanwhile, so nothing is lost: the
receiver resumes from the newest segment in its spool.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import docker

from daemon.encryption import Encryption
from daemon.errors import PgBackupError
from daemon.logs import get_logger
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.sources.transport import StderrTail
from daemon.wal.archive import archive_completed, ensure_dirs, set_spool_aside, spool_dir
from daemon.wal.backoff import Backoff
from daemon.wal.prerequisites import PREREQUISITES_PROBLEM
from daemon.wal.server import ReplicationEndpoint, ensure_slot, resolve_endpoint

log = get_logger(__name__)

STREAMING_PROBLEM = "wal_streaming_stopped"
ARCHIVE_INTERVAL_SECONDS = 1.0
STOP_GRACE_SECONDS = 10


def receive_argv(endpoint: ReplicationEndpoint, spool: Path, slot: str) -> list[str]:
    """pg_receivewal writing into the spool from the slot, fsyncing every write, exiting (not
    retrying by itself) when the connection ends: the supervisor resolves the address again."""
    return endpoint.replication.tool(
        "pg_receivewal", f"--directory={spool}", f"--slot={slot}", "--no-loop", "--synchronous",
    )


# What the server answers when the receiver would resume past the server's own history: the
# database was brought back to an earlier point (a point-in-time restore promotes to a new
# timeline; a restored snapshot stays on the old one, behind).
_SERVER_WENT_BACK = re.compile(r"is not in this server's history|is ahead of the WAL flush position of this server")


def server_went_back(reason: str) -> bool:
    """True when the receiver's exit says its spool is ahead of, or off, the server's history."""
    return bool(_SERVER_WENT_BACK.search(reason))


def newest_wal_time(spool: Path) -> float | None:
    """When the newest WAL was written into the spool (seconds since the epoch)."""
    times = [path.stat().st_mtime for path in spool.iterdir() if path.is_file()] if spool.is_dir() else []
    return max(times) if times else None


@dataclass
class WalReceiver:
    settings: Settings
    metrics: Metrics
    health: HealthState
    cancel: threading.Event
    client: docker.DockerClient | None = None
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], datetime] | None = None
    stable_after: float = 5.0  # seconds a start must run before /healthz counts streaming as up

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.supervise, name="wal-receiver", daemon=True)
        thread.start()
        return thread

    def supervise(self) -> None:
        """Run the receiver until the daemon shuts down, starting it again after each exit."""
        ensure_dirs(self.settings.backup_dir)
        self.metrics.wal_receiver_up.labels(self.settings.wal_slot_name).set(0)  # the series exists from the start
        self.health.set_problem(STREAMING_PROBLEM, "the WAL receiver has not started yet")
        while not self.cancel.is_set():
            started = time.monotonic()
            reason = self._run_once()
            if self.cancel.is_set():
                break
            self.metrics.wal_receiver_up.labels(self.settings.wal_slot_name).set(0)
            self.health.set_problem(STREAMING_PROBLEM, f"WAL streaming stopped: {reason}")
            self.metrics.wal_receiver_restarts.inc()
            delay = self.backoff.delay_after(time.monotonic() - started)
            log.error("wal_receiver_exited", reason=reason, restart_in_seconds=delay)
            if server_went_back(reason):
                self._set_spool_aside(reason)
            self.cancel.wait(delay)
        self.metrics.wal_receiver_up.labels(self.settings.wal_slot_name).set(0)
        self._archive_pass()

    def _run_once(self) -> str:
        try:
            endpoint = resolve_endpoint(self.settings, self.client)
            if ensure_slot(endpoint.sql, self.settings.wal_slot_name):
                log.info("wal_slot_created", slot=self.settings.wal_slot_name)
            return self._receive(endpoint)
        except PgBackupError as error:
            return str(error)
        except Exception as error:  # a bug or a Docker error: still a restart with back-off, never a dead thread
            log.exception("wal_receiver_failed")
            return f"unexpected error: {error}"

    def _receive(self, endpoint: ReplicationEndpoint) -> str:
        argv = receive_argv(endpoint, spool_dir(self.settings.backup_dir), self.settings.wal_slot_name)
        tail = StderrTail()
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, env=endpoint.environment(), start_new_session=True)
        except OSError as error:
            return f"cannot start {argv[0]}: {error.strerror}"
        reader = threading.Thread(target=_drain, args=(process, tail), daemon=True)
        reader.start()
        log.info("wal_receiver_started", server=endpoint.address, slot=self.settings.wal_slot_name,
                 program=argv[0])
        started = time.monotonic()
        up = False
        while True:
            try:
                returncode = process.wait(timeout=ARCHIVE_INTERVAL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if self.cancel.is_set():
                returncode = _stop(process)
                break
            if not up and time.monotonic() - started >= self.stable_after:
                up = True
                self.metrics.wal_receiver_up.labels(self.settings.wal_slot_name).set(1)
                self.health.set_problem(STREAMING_PROBLEM, None)
                self.health.set_problem(PREREQUISITES_PROBLEM, None)  # streaming works: nothing it needs is missing
                log.info("wal_streaming", server=endpoint.address)
            self._archive_pass()
        reader.join(timeout=5)
        self._archive_pass()
        return f"pg_receivewal exited with status {returncode}" + (f": {tail.text()}" if tail.text() else "")

    def _set_spool_aside(self, reason: str) -> None:
        """The server went back in time: archive what is complete, then move the spool aside so
        that the next start streams the server's present history from the slot."""
        self._archive_pass()
        try:
            aside = set_spool_aside(self.settings.backup_dir, self._now())
        except OSError as error:
            log.error("wal_spool_set_aside_failed", error=str(error))
            return
        if aside is not None:
            log.warning("wal_spool_set_aside", directory=str(aside), reason=reason,
                        hint="the database went back to an earlier point (a point-in-time or snapshot restore): "
                             "the WAL received past it is kept there, and streaming resumes from the server's "
                             "present history")

    @cached_property
    def _encryption(self) -> Encryption | None:
        """ENCRYPT_RECIPIENTS parsed once, not on every pass (one a second)."""
        return self.settings.encryption

    def _archive_pass(self) -> None:
        """Completed segments into the archive; a failure (a full disk) is logged and tried again."""
        try:
            archive_completed(self.settings.backup_dir, self.settings.gzip_level, self._now,
                              self._encryption, self.settings.signing_key)
        except OSError as error:
            log.error("wal_archive_failed", error=str(error))
        newest = newest_wal_time(spool_dir(self.settings.backup_dir))
        if newest is not None:
            self.metrics.wal_last_received.labels(self.settings.wal_slot_name).set(newest)

    def _now(self) -> datetime:
        return self.clock() if self.clock else datetime.now(self.settings.timezone)


def _drain(process: subprocess.Popen, tail: StderrTail) -> None:
    for block in iter(lambda: process.stderr.read1(65536), b""):
        tail.feed(block)
    process.stderr.close()


def _stop(process: subprocess.Popen) -> int:
    """SIGINT first: pg_receivewal then flushes what it has and exits normally."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            process.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            return process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()
