"""The hooks registered on the run extensions, their failures logged and counted.

HOOK_BEFORE_BACKUP runs under the backup lock before anything is taken; when it fails, the run
fails with a message that says so and no dump is taken. HOOK_AFTER_BACKUP runs after a
successful run and HOOK_ON_FAILURE after a failed one (including a failed before-hook), both
still under the lock, so the files they are given are complete and no retention sweep runs
meanwhile; their failure is logged and counted in pgbackup_hook_failures_total{hook} and
changes nothing else: the backup stays. The command itself is never logged (it may carry a
token); the log names the variable.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

from daemon.backup.extensions import RunExtensions
from daemon.backup.outcome import RunOutcome
from daemon.errors import Cancelled, PgBackupError
from daemon.hooks.command import CommandResult, run_shell
from daemon.hooks.environment import HookContext, finished_context, hook_environment, starting_context
from daemon.logs import get_logger, redactor
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings

log = get_logger(__name__)

BEFORE = "before_backup"
AFTER = "after_backup"
ON_FAILURE = "on_failure"
REASON_OUTPUT_CHARS = 300  # of the hook's output, in the run's failure message


class HookFailed(PgBackupError):
    """A hook exited non-zero, outlived HOOK_TIMEOUT_SECONDS, or could not be started."""


@dataclass
class Hooks:
    commands: dict[str, str]  # hook name (before_backup, ...) -> shell command
    timeout: float
    tz: str
    backup_dir: Path
    metrics: Metrics
    cancel: threading.Event

    def before_run(self, outcome: RunOutcome, targets: Sequence[str]) -> None:
        """HOOK_BEFORE_BACKUP: raises HookFailed (the run fails) when it does not exit 0."""
        self.run(BEFORE, starting_context(outcome, targets))

    def after_run(self, outcome: RunOutcome) -> None:
        """HOOK_AFTER_BACKUP after a good run, HOOK_ON_FAILURE after a failed one; never raises."""
        name = AFTER if outcome.ok else ON_FAILURE
        try:
            self.run(name, finished_context(outcome, self.backup_dir))
        except PgBackupError:
            pass  # logged and counted by run(); the backup stays what it is

    def run(self, name: str, context: HookContext) -> None:
        command = self.commands.get(name)
        if command is None:
            return
        context = _redacted(context)
        try:
            # The one read of the environment outside settings.py: PATH and HOME only (an image built
            # FROM this one may put its tools on PATH); hook_environment drops everything else.
            result = run_shell(command, hook_environment(context, os.environ, self.tz), self.timeout, self.cancel)
        except OSError as error:
            self._failed(name, f"{variable(name)} could not be started: {error.strerror or error}")
        else:
            self._finished(name, result)

    def _finished(self, name: str, result: CommandResult) -> None:
        if result.ok:
            log.info("hook_finished", hook=variable(name), seconds=round(result.seconds, 3), output=result.output)
            return
        if result.stopped_because == "cancelled":
            self._failed(name, f"{variable(name)} was killed: the daemon is stopping", result, Cancelled)
        self._failed(name, failure_reason(variable(name), result, self.timeout), result)

    def _failed(self, name: str, reason: str, result: CommandResult | None = None,
                error: type[PgBackupError] = HookFailed) -> NoReturn:
        self.metrics.hook_failures.labels(name).inc()
        log.error("hook_failed", hook=variable(name), error=reason,
                  seconds=round(result.seconds, 3) if result else None, output=result.output if result else None)
        raise error(reason)


def variable(name: str) -> str:
    return f"HOOK_{name.upper()}"


def failure_reason(variable_name: str, result: CommandResult, timeout: float) -> str:
    """What the run's failure (and its notification) says about a hook that failed."""
    if result.stopped_because == "timeout":
        reason = f"{variable_name} did not finish within {timeout:g} s and was killed"
    else:
        reason = f"{variable_name} failed (exit status {result.returncode})"
    last_line = result.output.splitlines()[-1] if result.output else ""
    if last_line:
        reason += f": {last_line[-REASON_OUTPUT_CHARS:]}"
    return redactor.scrub(reason)


def _redacted(context: HookContext) -> HookContext:
    """PGBACKUP_ERROR holds failure messages; any secret in them is masked."""
    return replace(context, error=redactor.scrub(context.error)) if context.error else context


def configured_hooks(settings: Settings) -> dict[str, str]:
    commands = {BEFORE: settings.hook_before_backup, AFTER: settings.hook_after_backup,
                ON_FAILURE: settings.hook_on_failure}
    return {name: command for name, command in commands.items() if command is not None}


def install(settings: Settings, extensions: RunExtensions, metrics: Metrics, cancel: threading.Event) -> None:
    """Register the configured hooks; their failure counters start at 0."""
    commands = configured_hooks(settings)
    if not commands:
        return
    for name in commands:
        metrics.hook_failures.labels(name)
    hooks = Hooks(commands, settings.hook_timeout_seconds, settings.tz, settings.backup_dir, metrics, cancel)
    if BEFORE in commands:
        extensions.check_before_runs(hooks.before_run)
    if AFTER in commands or ON_FAILURE in commands:
        extensions.after_runs(hooks.after_run)
