"""The daemon's check of ``synchronous_standby_names`` and ``synchronous_commit``: at start and
then every CHECK_INTERVAL_SECONDS, because both change with a reload (``wal setup --apply``, or
an operator undoing it in a hurry). What is wrong (``synchronous.assess_synchronous``) is
logged when it changes and stays on ``/healthz`` while it lasts: zero loss asked for and not
in effect, or commits waiting for a receiver that WAL_SYNCHRONOUS or WAL_STREAMING turned off.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import docker

from daemon.errors import PgBackupError
from daemon.logs import get_logger
from daemon.monitoring.health import HealthState
from daemon.settings import Settings
from daemon.sources.connect import connect
from daemon.wal.prerequisites import Finding
from daemon.wal.server import APPLICATION_NAME, commit_settings
from daemon.wal.synchronous import assess_synchronous, parse_standby_names, receiver_dependency

log = get_logger(__name__)

SYNCHRONOUS_PROBLEM = "wal_synchronous_setting"
CHECK_INTERVAL_SECONDS = 60.0


@dataclass
class SynchronousWatch:
    settings: Settings
    health: HealthState
    cancel: threading.Event
    client: docker.DockerClient | None = None
    interval: float = CHECK_INTERVAL_SECONDS
    _reported: tuple[Finding, ...] | None = None
    _unreachable: bool = False  # the server did not answer the last check (logged once)

    def start(self, until_clear: bool = False) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(until_clear,), name="wal-synchronous", daemon=True)
        thread.start()
        return thread

    def run(self, until_clear: bool = False) -> None:
        """Check until the daemon shuts down; with ``until_clear`` only until nothing is wrong (with
        WAL_STREAMING off nothing the sidecar does can make it wrong again)."""
        while not self.cancel.is_set():
            findings = self.check()
            if until_clear and findings is not None and not any(finding.blocking for finding in findings):
                return
            self.cancel.wait(self.interval)

    def check(self) -> list[Finding] | None:
        """One look at the server: findings logged if they changed, /healthz set; None when the
        server could not be asked (the last answer stands)."""
        try:
            commit = commit_settings(connect(self.settings, self.client).server)
            findings = assess_synchronous(commit, APPLICATION_NAME, wanted=self.settings.wal_synchronous,
                                          streaming=self.settings.wal_streaming)
        except (PgBackupError, ValueError) as error:
            if not self._unreachable:
                log.warning("wal_synchronous_not_checked", error=str(error))
            self._unreachable = True
            return None
        self._unreachable = False
        blocking = [finding.problem for finding in findings if finding.blocking]
        self.health.set_problem(SYNCHRONOUS_PROBLEM, "; ".join(blocking) if blocking else None)
        if tuple(findings) != self._reported:
            self._log(findings, commit.standby_names, commit.synchronous_commit)
            self._reported = tuple(findings)
        return findings

    def _log(self, findings: list[Finding], standby_names: str, level: str) -> None:
        for finding in findings:
            (log.error if finding.blocking else log.warning)(
                "wal_synchronous_wrong" if finding.blocking else "wal_synchronous_advice",
                problem=finding.problem, change=finding.change)
        if findings:
            return
        dependency = receiver_dependency(parse_standby_names(standby_names), APPLICATION_NAME)
        if self.settings.wal_synchronous:
            log.info("wal_synchronous_in_effect", synchronous_standby_names=standby_names, synchronous_commit=level,
                     meaning=dependency.value)
        elif self._reported:
            log.info("wal_synchronous_cleared", synchronous_standby_names=standby_names)
