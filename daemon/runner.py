"""One backup run: take the lock, bind the run's context, take each artifact, and record
the outcome in metrics, health and the log. A failed target never stops the others, and
nothing here deletes or touches an earlier backup."""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

import docker
import structlog

from daemon.backup import ArtifactSink, BackupContext, StreamObserver, take_artifact
from daemon.compression import Gzip
from daemon.errors import Cancelled, PgBackupError
from daemon.health import HealthState
from daemon.lock import backup_lock
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.metrics import Metrics
from daemon.plans import DumpPlan, plan_databases, plan_full, plan_tables
from daemon.progress import Progress
from daemon.rowcount import row_count_observers
from daemon.settings import Settings
from daemon.sources.connect import Connection, connect
from daemon.storage.local import ensure_backup_dir, remove_leftovers

log = get_logger(__name__)

# What the CLI and scheduler ask for -> the kind recorded in manifests and metrics.
# The requests that back up everything their kind's schedule covers (so their plans say which
# targets are current); "database" and "pre_migration" are single runs by hand.
SCHEDULED_REQUESTS = ("full", "databases", "tables")
METRIC_KIND = {
    "full": "full",
    "databases": "database",
    "database": "database",
    "tables": "table",
    "pre_migration": "pre_migration",
}


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


AfterRunHook = Callable[[RunOutcome], None]
SinkFactory = Callable[[DumpPlan, str], Sequence[ArtifactSink]]


class BackupRunner:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        health: HealthState,
        *,
        cancel: threading.Event | None = None,
        docker_client: docker.DockerClient | None = None,
        progress_stream: TextIO = sys.stderr,
        clock: Callable[[], datetime] | None = None,
    ):
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.cancel = cancel or threading.Event()
        self.docker_client = docker_client
        self.progress_stream = progress_stream
        self.clock = clock or (lambda: datetime.now(settings.timezone))
        self.after_run_hooks: list[AfterRunHook] = []
        self.sink_factories: list[SinkFactory] = []
        # Called with every manifest on disk when the daemon rescans BACKUP_DIR.
        self.manifest_listeners: list[Callable[[list[Manifest]], None]] = []
        self.own_run_ids: set[str] = set()  # runs of this process, whose outcome health already knows
        # Row counts of plain dumps go into every manifest (daemon and CLI alike).
        self.observer_factories: list[Callable[[DumpPlan], Sequence[StreamObserver]]] = [row_count_observers]
        # Context managers entered under the lock around the whole run (e.g. the run log file).
        self.run_wrappers: list[Callable[[RunOutcome], AbstractContextManager]] = []

    def run(self, request: str, database: str | None = None, *, wait: bool = True) -> RunOutcome:
        """Run one kind of backup now (request: full, databases, database, tables, pre_migration)."""
        kind = METRIC_KIND[request]
        outcome = RunOutcome(run_id=uuid.uuid4().hex[:12], kind=kind, started_at=self.clock())

        def unstarted(error: Exception) -> None:
            for target in self._expected_targets(request, database):
                self._fail(outcome, target, error)

        with structlog.contextvars.bound_contextvars(run_id=outcome.run_id, kind=kind):
            self.run_framed(outcome, wait, lambda: self._run_locked(request, database, outcome), unstarted)
        return outcome

    def run_framed(self, outcome: RunOutcome, wait: bool, locked: Callable[[], None],
                   unstarted: Callable[[Exception], None]) -> None:
        """What every run (backups and volume snapshots) goes through: its kind counts as running
        for /healthz from the lock wait on; under the lock the run wrappers (the run log) are
        entered and ``locked()`` runs; a lock that cannot be had at all (BACKUP_DIR read-only,
        full, not a directory) is a failed run, which ``unstarted(error)`` records; the after-run
        hooks (notification, offsite backlog, retention) follow in every case, inside the
        wrappers. LockBusy (--no-wait) and Cancelled propagate: the caller reports them."""
        with ExitStack() as held:
            with self.marked_running(outcome):
                try:
                    held.enter_context(self.lock(outcome, wait))
                except PgBackupError:
                    raise
                except Exception as error:
                    log.error("run_not_started", error=str(error), exc_info=not isinstance(error, OSError))
                    unstarted(error)
                    outcome.finished_at = self.clock()
                else:
                    self._enter_wrappers(held, outcome)
                    locked()
            self.after_run(outcome)

    @contextmanager
    def marked_running(self, outcome: RunOutcome) -> Iterator[None]:
        """/healthz counts the run's kind as running from before the lock wait until the run
        ends, however it ends: a daily kind's allowance is exactly one day, which a run
        waiting behind another one would overrun."""
        self.health.run_started(outcome.kind)
        try:
            yield
        finally:
            self.health.run_finished(outcome.kind, outcome.started_at if outcome.ok else None)

    def lock(self, outcome: RunOutcome, wait: bool) -> AbstractContextManager:
        """The backup lock on BACKUP_DIR (created if missing), naming this run as its holder."""
        ensure_backup_dir(self.settings.backup_dir)
        holder = {"run_id": outcome.run_id, "kind": outcome.kind, "since": outcome.started_at.isoformat()}
        return backup_lock(
            self.settings.backup_dir, holder, wait=wait, cancel=self.cancel,
            on_wait=lambda other: log.info("waiting_for_lock", held_by=other),
        )

    def _enter_wrappers(self, stack: ExitStack, outcome: RunOutcome) -> None:
        for wrapper in self.run_wrappers:
            try:
                stack.enter_context(wrapper(outcome))
            except Exception:
                log.exception("run_wrapper_failed", wrapper=getattr(wrapper, "__name__", repr(wrapper)))

    def _run_locked(self, request: str, database: str | None, outcome: RunOutcome) -> None:
        kind = outcome.kind
        self.metrics.in_progress.labels(kind).set(1)
        log.info("run_started", database=database)
        try:
            self._remove_leftover_partials()
            self._take_all(request, database, outcome)
        finally:
            outcome.finished_at = self.clock()
            self.metrics.in_progress.labels(kind).set(0)
        log.info(
            "run_finished", ok=outcome.ok, artifacts=[m.file for m in outcome.artifacts],
            failures=len(outcome.failures),
            duration_seconds=round((outcome.finished_at - outcome.started_at).total_seconds(), 3),
        )

    def _take_all(self, request: str, database: str | None, outcome: RunOutcome) -> None:
        try:
            connection = connect(self.settings, self.docker_client)
            plans = self._plans(request, database, connection)
        except PgBackupError as error:
            for target in self._expected_targets(request, database):
                self._fail(outcome, target, error)
            return
        if request in SCHEDULED_REQUESTS:
            self.metrics.cover_targets(outcome.kind, [plan.target for plan in plans])
        context = self._context(connection, outcome.run_id)
        self.own_run_ids.add(outcome.run_id)
        for plan in plans:
            with structlog.contextvars.bound_contextvars(target=plan.target):
                try:
                    manifest = take_artifact(plan, context)
                except Cancelled as error:
                    self._fail(outcome, plan.target, error)
                    raise
                except PgBackupError as error:
                    self._fail(outcome, plan.target, error)
                except Exception as error:  # a disk error or a bug: still a failed backup, never a crash
                    log.exception("unexpected_error")
                    self._fail(outcome, plan.target, error)
                else:
                    self.metrics.record_success(manifest)
                    outcome.artifacts.append(manifest)

    def _plans(self, request: str, database: str | None, connection: Connection) -> list[DumpPlan]:
        settings, server = self.settings, connection.server
        if request in ("full", "pre_migration"):
            return plan_full(server, server.list_databases(), pre_migration=request == "pre_migration")
        if request == "database":
            databases = [database]
        elif request == "databases":
            databases = settings.backup_databases or server.list_databases()
        else:
            return plan_tables(
                server, settings.backup_tables, settings.backup_format, settings.compression_level,
                settings.dump_jobs,
            )
        return plan_databases(
            server, databases, settings.backup_format, settings.compression_level, settings.dump_jobs
        )

    def declare_expected_targets(self, request: str) -> None:
        """Create the run counters of the targets a run of ``request`` is expected to have, at 0."""
        for target in self._expected_targets(request, None):
            self.metrics.declare(METRIC_KIND[request], target)

    def _expected_targets(self, request: str, database: str | None) -> list[str]:
        if request == "database" and database:
            return [database]
        if request == "databases" and self.settings.backup_databases:
            return list(self.settings.backup_databases)
        if request == "tables" and self.settings.backup_tables:
            return list(self.settings.backup_tables)
        return ["all"]

    def _context(self, connection: Connection, run_id: str) -> BackupContext:
        return BackupContext(
            run_id=run_id,
            server=connection.server,
            server_version=connection.version,
            directory=self.settings.backup_dir,
            gzip=Gzip(self.settings.gzip_level, self.settings.gzip_threads),
            clock=self.clock,
            progress=lambda label: Progress.for_stream(
                label, self.settings.progress_interval_seconds, self.progress_stream
            ),
            cancel=self.cancel,
            method=connection.method,
            sinks=self._sinks,
            observers=lambda plan: [o for factory in self.observer_factories for o in factory(plan)],
        )

    def _sinks(self, plan: DumpPlan, file_name: str) -> list[ArtifactSink]:
        return [sink for factory in self.sink_factories for sink in factory(plan, file_name)]

    def _fail(self, outcome: RunOutcome, target: str, error: BaseException) -> None:
        self.metrics.record_failure(outcome.kind, target)
        outcome.failures.append(TargetFailure(outcome.kind, target, str(error)))
        log.error("backup_failed", target=target, error=str(error))

    def _remove_leftover_partials(self) -> None:
        for name in remove_leftovers(self.settings.backup_dir):
            log.warning("removed_incomplete_file", file=name)

    def after_run(self, outcome: RunOutcome) -> None:
        """Notifications, offsite backlog, retention: each may fail without hiding the backup's result."""
        for hook in self.after_run_hooks:
            try:
                hook(outcome)
            except Exception:
                log.exception("after_run_hook_failed", hook=getattr(hook, "__name__", repr(hook)))
