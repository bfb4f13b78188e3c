"""Stream observers of the backup run: the row counts of plain dumps (see daemon.rowcount for
why only plain dumps are counted)."""

from __future__ import annotations

from collections.abc import Sequence

from daemon.backup.plans import DumpPlan
from daemon.manifest import Manifest
from daemon.rowcount import RowCounter


class RowCountObserver:
    """A StreamObserver that records a plain dump's row counts in its manifest."""

    def __init__(self, plan: DumpPlan):
        self.counter = RowCounter(None if plan.target == "all" else plan.target)

    def feed(self, chunk: bytes) -> None:
        self.counter.feed(chunk)

    def record(self, manifest: Manifest) -> None:
        manifest.row_counts = {db: dict(tables) for db, tables in self.counter.counts.items()}


def row_count_observers(plan: DumpPlan) -> Sequence[RowCountObserver]:
    """Observer factory for the runner: plain dumps only (see daemon.rowcount)."""
    return [RowCountObserver(plan)] if plan.dump_format == "plain" else []
