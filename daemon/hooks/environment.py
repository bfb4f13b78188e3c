"""The environment a hook runs with: an allow-list, never the sidecar's own environment.

The sidecar's environment holds POSTGRES_PASSWORD, AWS_SECRET_ACCESS_KEY and the webhook URLs;
a hook is a user's script that may log, print or send what it is given. So it gets PATH and
HOME from the sidecar, TZ from the settings, and the PGBACKUP_* variables below, nothing else.
Multi-valued variables hold one value per line (file names never contain a newline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.backup.outcome import RunOutcome

FROM_SIDECAR = ("PATH", "HOME")
FALLBACK = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/"}
ERROR_LIMIT = 2000  # characters of PGBACKUP_ERROR: the reasons, not a whole log

STARTING = "starting"
SUCCESS = "success"
FAILURE = "failure"


@dataclass(frozen=True)
class HookContext:
    """What a hook is told about its run."""

    kind: str
    run_id: str
    status: str  # starting | success | failure
    targets: tuple[str, ...]
    files: tuple[Path, ...] = ()
    error: str = ""


def starting_context(outcome: RunOutcome, targets: Sequence[str]) -> HookContext:
    """Before the run: the targets it is expected to produce (``all`` for every database)."""
    return HookContext(outcome.kind, outcome.run_id, STARTING, tuple(targets))


def finished_context(outcome: RunOutcome, backup_dir: Path) -> HookContext:
    """After the run: its targets, the absolute paths of the artifacts it made, and on failure
    each failed target's reason."""
    targets = [manifest.target for manifest in outcome.artifacts] + [failure.target for failure in outcome.failures]
    error = "\n".join(f"{failure.target}: {failure.error}" for failure in outcome.failures)
    if not outcome.ok and not error:
        error = "the run produced no backup"
    return HookContext(
        kind=outcome.kind,
        run_id=outcome.run_id,
        status=SUCCESS if outcome.ok else FAILURE,
        targets=tuple(dict.fromkeys(targets)),
        files=tuple(backup_dir / manifest.file for manifest in outcome.artifacts),
        error=error,
    )


def hook_environment(context: HookContext, sidecar_environment: Mapping[str, str], tz: str) -> dict[str, str]:
    """The whole environment of a hook process (pass the error already redacted)."""
    environment = {name: sidecar_environment.get(name) or FALLBACK[name] for name in FROM_SIDECAR}
    environment.update({
        "TZ": tz,
        "PGBACKUP_KIND": context.kind,
        "PGBACKUP_RUN_ID": context.run_id,
        "PGBACKUP_STATUS": context.status,
        "PGBACKUP_TARGET": "\n".join(context.targets),
        "PGBACKUP_FILES": "\n".join(str(path) for path in context.files),
    })
    if context.error:
        environment["PGBACKUP_ERROR"] = context.error[:ERROR_LIMIT]
    return environment
