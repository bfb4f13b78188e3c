"""Destructive steps are named exactly and confirmed: typed 'yes' on a terminal, --yes otherwise."""

from __future__ import annotations

import sys
from typing import TextIO

from daemon.errors import PgBackupError


class NotConfirmed(PgBackupError):
    """A destructive step was not confirmed."""

    exit_code = 2


def confirm(steps: list[str], yes: bool, stdin: TextIO | None = None, stderr: TextIO | None = None) -> None:
    """Return only when every step in ``steps`` may go ahead."""
    if not steps:
        return
    stdin, stderr = stdin or sys.stdin, stderr or sys.stderr
    listing = "; ".join(steps)
    if yes:
        stderr.write(f"pgbackup: confirmed by --yes: {listing}\n")
        return
    if not (stdin.isatty() and stderr.isatty()):
        raise NotConfirmed(f"this restore will {listing}; nothing was changed. Run it again with --yes to go ahead")
    stderr.write("This restore will:\n" + "".join(f"  - {step}\n" for step in steps))
    stderr.write("Type 'yes' to continue: ")
    stderr.flush()
    if stdin.readline().strip() != "yes":
        raise NotConfirmed("not confirmed; nothing was changed")
