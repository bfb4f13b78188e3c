"""One backup run: take the lock, bind the run's context, take each artifact, and record
the outcome in metrics, health and the log. A failed target never stops the others, and
nothing here deletes or touches an earlier backup."""

from __future__ import annotations

import contextvars
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import datetime
from typing import TextIO

import docker
import structlog

from daemon.backup.artifact import BackupContext, take_artifact
from daemon.backup.compression import Gzip, available_cpus
from daemon.backup.exclusions import Exclusions
from daemon.backup.extensions import RunExtensions
from daemon.backup.outcome import RunOutcome, TargetFailure, worker_thread_prefix
from daemon.backup.plans import DumpPlan, plan_databases, plan_full, plan_tables
from daemon.backup.time_limits import RunDeadline, RunDeadlinePassed, explain_lock_wait
from daemon.errors import Cancelled, CommandFailed, PgBackupError
from daemon.identity import this_instance
from daemon.lock import backup_lock
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.progress import Progress
from daemon.settings import Settings
from daemon.sources.connect import Connection, connect
from daemon.sources.postgres import PostgresServer
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


MAX_AUTO_DATABASE_JOBS = 4


def take_side_by_side(plans: list[DumpPlan], take: Callable[[DumpPlan], None], jobs: int, thread_prefix: str) -> None:
    """``take(plan)`` for every plan, ``jobs`` at a time. Each worker runs in a copy of the
    caller's context (the run's log fields); a failure of one plan is recorded by ``take`` and
    never stops the others; a cancellation propagates once every started plan has ended."""
    if jobs <= 1 or len(plans) <= 1:
        for plan in plans:
            take(plan)
        return
    with ThreadPoolExecutor(max_workers=min(jobs, len(plans)), thread_name_prefix=thread_prefix) as pool:
        futures = [pool.submit(contextvars.copy_context().run, take, plan) for plan in plans]
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error


def _in_plan_order(outcome: RunOutcome, plans: list[DumpPlan]) -> None:
    """Artifacts and failures listed in the order of the plans, however the workers finished."""
    order = {plan.target: index for index, plan in enumerate(plans)}
    outcome.artifacts.sort(key=lambda manifest: order.get(manifest.target, len(order)))
    outcome.failures.sort(key=lambda failure: order.get(failure.target, len(order)))


class BackupRunner:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        health: HealthState,
        extensions: RunExtensions | None = None,
        *,
        cancel: threading.Event | None = None,
        docker_client: docker.DockerClient | None = None,
        progress_stream: TextIO = sys.stderr,
        clock: Callable[[], datetime] | None = None,
    ):
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.extensions = extensions or RunExtensions()
        self.cancel = cancel or threading.Event()
        self.docker_client = docker_client
        self.progress_stream = progress_stream
        self.clock = clock or (lambda: datetime.now(settings.timezone))
        self.own_run_ids: set[str] = set()  # runs of this process, whose outcome health already knows
        self._deadline: RunDeadline | None = None  # of the run holding the lock

    def run(self, request: str, database: str | None = None, *, wait: bool = True) -> RunOutcome:
        """Run one kind of backup now (request: full, databases, database, tables, pre_migration)."""
        return self.run_kind(
            METRIC_KIND[request], self._expected_targets(request, database), wait,
            lambda outcome: self._take_all(request, database, outcome), database=database,
        )

    def run_kind(self, kind: str, expected_targets: list[str], wait: bool,
                 take_all: Callable[[RunOutcome], None], **started: object) -> RunOutcome:
        """What every run (dumps and volume snapshots) goes through. Its kind counts as running
        for /healthz from the lock wait on; under the lock the run wrappers (the run log) are
        entered and ``take_all(outcome)`` takes the artifacts (``take_target`` for each); a lock
        that cannot be had at all (BACKUP_DIR read-only, full, not a directory) is a failed run
        of each expected target; the after-run hooks (notification, offsite backlog, retention)
        follow in every case, inside the wrappers. LockBusy (--no-wait) and Cancelled propagate:
        the caller reports them. ``started`` goes into the run_started log line."""
        outcome = RunOutcome(run_id=uuid.uuid4().hex[:12], kind=kind, started_at=self.clock())
        with structlog.contextvars.bound_contextvars(run_id=outcome.run_id, kind=kind), ExitStack() as held:
            with self._marked_running(outcome):
                try:
                    held.enter_context(self._lock(outcome, wait))
                except PgBackupError:
                    raise
                except Exception as error:
                    log.error("run_not_started", error=str(error), exc_info=not isinstance(error, OSError))
                    for target in expected_targets:
                        self.record_failure(outcome, target, error)
                    outcome.finished_at = self.clock()
                else:
                    self.extensions.enter_wrappers(held, outcome)
                    self._run_locked(outcome, self._checked(take_all, expected_targets), started)
            self.extensions.run_ended(outcome)
        return outcome

    def _checked(self, take_all: Callable[[RunOutcome], None],
                 expected_targets: list[str]) -> Callable[[RunOutcome], None]:
        """``take_all`` after the before-run checks (HOOK_BEFORE_BACKUP): a check that fails
        fails each expected target with its reason, and nothing is taken."""
        def take_all_checked(outcome: RunOutcome) -> None:
            try:
                self.extensions.check_run(outcome, expected_targets)
            except Exception as error:
                if not isinstance(error, PgBackupError):
                    log.exception("before_run_check_failed")
                for target in expected_targets:
                    self.record_failure(outcome, target, error)
                if isinstance(error, Cancelled):
                    raise
                return
            take_all(outcome)

        return take_all_checked

    def take_target(self, outcome: RunOutcome, target: str, take: Callable[[], Manifest]) -> None:
        """One artifact of the run: its success or failure recorded; a failure never stops the
        other targets, except a cancellation, which is recorded and propagates. Past the run's
        deadline the target fails with the deadline as its reason, and is not started."""
        if self._deadline_passed():
            self.record_failure(outcome, target, self._deadline_error(outcome))
            return
        try:
            manifest = take()
        except Cancelled as error:
            if self._deadline_passed():  # the deadline, not a shutdown: the daemon goes on
                self.record_failure(outcome, target, self._deadline_error(outcome))
                return
            self.record_failure(outcome, target, error)
            raise
        except CommandFailed as error:
            self.record_failure(outcome, target, explain_lock_wait(error, self.settings.dump_lock_wait_timeout_seconds))
        except PgBackupError as error:
            self.record_failure(outcome, target, error)
        except Exception as error:  # a disk error or a bug: still a failed backup, never a crash
            log.exception("unexpected_error")
            self.record_failure(outcome, target, error)
        else:
            self.metrics.record_success(manifest)
            outcome.artifacts.append(manifest)

    def _deadline_passed(self) -> bool:
        return self._deadline is not None and self._deadline.passed

    def _deadline_error(self, outcome: RunOutcome) -> RunDeadlinePassed:
        return RunDeadlinePassed(outcome.kind, self.settings.run_deadline_seconds)

    def record_failure(self, outcome: RunOutcome, target: str, error: BaseException) -> None:
        self.metrics.record_failure(outcome.kind, target)
        outcome.failures.append(TargetFailure(outcome.kind, target, str(error)))
        log.error("backup_failed", target=target, error=str(error))

    @contextmanager
    def _marked_running(self, outcome: RunOutcome) -> Iterator[None]:
        """/healthz counts the run's kind as running from before the lock wait until the run
        ends, however it ends: a daily kind's allowance is exactly one day, which a run
        waiting behind another one would overrun."""
        self.health.run_started(outcome.kind)
        try:
            yield
        finally:
            self.health.run_finished(outcome.kind, outcome.started_at if outcome.ok else None)

    def _lock(self, outcome: RunOutcome, wait: bool) -> AbstractContextManager:
        """The backup lock on BACKUP_DIR (created if missing), naming this run as its holder."""
        ensure_backup_dir(self.settings.backup_dir)
        holder = {"run_id": outcome.run_id, "kind": outcome.kind, "since": outcome.started_at.isoformat()}
        return backup_lock(
            self.settings.backup_dir, holder, wait=wait, cancel=self.cancel,
            on_wait=lambda other: log.info("waiting_for_lock", held_by=other),
        )

    def _run_locked(self, outcome: RunOutcome, take_all: Callable[[RunOutcome], None],
                    started: dict[str, object]) -> None:
        kind = outcome.kind
        self.metrics.in_progress.labels(kind).set(1)
        log.info("run_started", **started)
        try:
            self._remove_leftover_partials()
            self.own_run_ids.add(outcome.run_id)
            with RunDeadline(self.cancel, self.settings.run_deadline_seconds) as self._deadline:
                take_all(outcome)
        finally:
            self._deadline = None
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
                self.record_failure(outcome, target, error)
            return
        if request in SCHEDULED_REQUESTS:
            self.metrics.cover_targets(outcome.kind, [plan.target for plan in plans])
        context = self._context(connection, outcome.run_id)

        def take_plan(plan: DumpPlan) -> None:
            with structlog.contextvars.bound_contextvars(target=plan.target):
                self.take_target(outcome, plan.target, lambda: take_artifact(plan, context))

        take_side_by_side(plans, take_plan, self._jobs(request), worker_thread_prefix(outcome.run_id))
        _in_plan_order(outcome, plans)

    def _jobs(self, request: str) -> int:
        """How many artifacts of one run are taken at once (DATABASE_JOBS for databases and tables)."""
        if request not in ("databases", "tables"):
            return 1
        return self.settings.database_jobs or min(available_cpus(), MAX_AUTO_DATABASE_JOBS)

    def _plans(self, request: str, database: str | None, connection: Connection) -> list[DumpPlan]:
        settings, server = self.settings, connection.server
        exclusions = Exclusions.from_settings(settings)
        if request in ("full", "pre_migration"):
            return plan_full(server, self._databases_to_back_up(server), pre_migration=request == "pre_migration",
                             exclusions=exclusions)
        if request == "database":
            databases = [database]  # asked for by name: taken even when EXCLUDE_DATABASES names it
        elif request == "databases":
            databases = settings.backup_databases or exclusions.kept(self._databases_to_back_up(server))
        else:
            return plan_tables(
                server, settings.backup_tables, settings.backup_format, settings.compression_level,
                settings.dump_jobs,
            )
        return plan_databases(
            server, databases, settings.backup_format, settings.compression_level, settings.dump_jobs, exclusions
        )

    @staticmethod
    def _databases_to_back_up(server: PostgresServer) -> list[str]:
        """Every database that accepts connections; one left invalid by an interrupted DROP DATABASE
        cannot be dumped (pg_dumpall skips it too) and is named in the log instead."""
        for name in server.invalid_databases():
            log.warning("invalid_database_skipped", database=name,
                        hint="an interrupted DROP DATABASE left it unusable; finish it with DROP DATABASE")
        return server.list_databases()

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
            progress=self.progress,
            cancel=self._deadline.event if self._deadline else self.cancel,
            method=connection.method,
            instance=this_instance(self.settings).name,
            sinks=self.extensions.sinks,
            observers=self.extensions.observers,
            encryption=self.settings.encryption,
            signing_key=self.settings.signing_key,
        )

    def progress(self, label: str) -> Progress:
        """Progress lines of one stream, every PROGRESS_INTERVAL_SECONDS."""
        return Progress.for_stream(label, self.settings.progress_interval_seconds, self.progress_stream)

    def _remove_leftover_partials(self) -> None:
        for name in remove_leftovers(self.settings.backup_dir):
            log.warning("removed_incomplete_file", file=name)
