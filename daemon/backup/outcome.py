"""What one run produced: its artifacts and the targets that failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from daemon.manifest import Manifest


def worker_thread_prefix(run_id: str) -> str:
    """The name prefix of the threads that take a run's artifacts side by side (the run log
    copies their lines as it does the run's own thread's)."""
    return f"run-{run_id}"


@dataclass
class TargetFailure:
    kind: str
    target: str
    error: str


@dataclass
class RunOutcome:
    run_id: str
    kind: str
    started_at: datetime
    finished_at: datetime | None = None
    artifacts: list[Manifest] = field(default_factory=list)
    failures: list[TargetFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and bool(self.artifacts)
