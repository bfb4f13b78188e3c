"""The one seam where features join a backup run: a typed hook per extension point.

The daemon's assembly (service.py) creates one ``RunExtensions``, each feature's installer
registers on it, and the runner only calls it. A failing hook is logged and never hides the
backup's own result; only a before-run check may fail a run, on purpose, before it takes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Protocol

from daemon.backup.artifact import ArtifactSink, StreamObserver
from daemon.backup.observers import row_count_observers
from daemon.backup.outcome import RunOutcome
from daemon.backup.plans import DumpPlan
from daemon.logs import get_logger
from daemon.manifest import Manifest

log = get_logger(__name__)


class RunWrapper(Protocol):
    """Entered under the lock around a whole run (e.g. the run's log file)."""

    def __call__(self, outcome: RunOutcome) -> AbstractContextManager[object]: ...


class SinkFactory(Protocol):
    """Further destinations fed each artifact's bytes while it is written (e.g. S3)."""

    def __call__(self, plan: DumpPlan, file_name: str) -> Sequence[ArtifactSink]: ...


class ObserverFactory(Protocol):
    """Readers of each dump's raw stream that add to its manifest (e.g. row counts)."""

    def __call__(self, plan: DumpPlan) -> Sequence[StreamObserver]: ...


class BeforeRunCheck(Protocol):
    """Called under the lock before the run takes anything, with the targets it is expected to
    produce (HOOK_BEFORE_BACKUP). An error it raises fails the run: each expected target fails
    with its message, and nothing is taken."""

    def __call__(self, outcome: RunOutcome, targets: Sequence[str]) -> None: ...


class AfterRunHook(Protocol):
    """Called once a run has ended, however it ended (notification, offsite backlog, retention)."""

    def __call__(self, outcome: RunOutcome) -> None: ...


class ManifestListener(Protocol):
    """Called with every manifest on disk whenever the daemon rescans BACKUP_DIR (feature gauges)."""

    def __call__(self, manifests: list[Manifest]) -> None: ...


@dataclass
class RunExtensions:
    """What the installed features add to every run. Row counts of plain dumps are always on,
    for the daemon and the CLI alike."""

    run_wrappers: list[RunWrapper] = field(default_factory=list)
    sink_factories: list[SinkFactory] = field(default_factory=list)
    observer_factories: list[ObserverFactory] = field(default_factory=lambda: [row_count_observers])
    before_run_checks: list[BeforeRunCheck] = field(default_factory=list)
    after_run_hooks: list[AfterRunHook] = field(default_factory=list)
    manifest_listeners: list[ManifestListener] = field(default_factory=list)

    # --- registration, by the features' installers --------------------------------------
    def wrap_runs(self, wrapper: RunWrapper) -> None:
        self.run_wrappers.append(wrapper)

    def add_sinks(self, factory: SinkFactory) -> None:
        self.sink_factories.append(factory)

    def add_observers(self, factory: ObserverFactory) -> None:
        self.observer_factories.append(factory)

    def check_before_runs(self, check: BeforeRunCheck) -> None:
        self.before_run_checks.append(check)

    def after_runs(self, hook: AfterRunHook) -> None:
        self.after_run_hooks.append(hook)

    def listen_to_manifests(self, listener: ManifestListener) -> None:
        self.manifest_listeners.append(listener)

    # --- use, by the runner and the daemon's manifest rescan ----------------------------
    def sinks(self, plan: DumpPlan, file_name: str) -> list[ArtifactSink]:
        return [sink for factory in self.sink_factories for sink in factory(plan, file_name)]

    def observers(self, plan: DumpPlan) -> list[StreamObserver]:
        return [observer for factory in self.observer_factories for observer in factory(plan)]

    def enter_wrappers(self, stack: ExitStack, outcome: RunOutcome) -> None:
        for wrapper in self.run_wrappers:
            try:
                stack.enter_context(wrapper(outcome))
            except Exception:
                log.exception("run_wrapper_failed", wrapper=_name(wrapper))

    def check_run(self, outcome: RunOutcome, targets: Sequence[str]) -> None:
        """Every before-run check; the first that raises stops the others and fails the run."""
        for check in self.before_run_checks:
            check(outcome, targets)

    def run_ended(self, outcome: RunOutcome) -> None:
        for hook in self.after_run_hooks:
            try:
                hook(outcome)
            except Exception:
                log.exception("after_run_hook_failed", hook=_name(hook))

    def manifests_found(self, manifests: list[Manifest]) -> None:
        for listener in self.manifest_listeners:
            try:
                listener(manifests)
            except Exception:  # a feature's gauges must never break /metrics
                log.exception("manifest_listener_failed", listener=_name(listener))


def _name(hook: object) -> str:
    return getattr(hook, "__name__", repr(hook))
