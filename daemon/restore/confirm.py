"""Destructive steps are named exactly and confirmed: typed 'yes' on a terminal, --yes otherwise.

The question is asked while the restore holds the backup lock, so an answer that never comes
must not hold it for ever (and with it every scheduled backup): after ANSWER_TIMEOUT_SECONDS
without an answer nothing is changed and the restore ends.
"""

from __future__ import annotations

import select
import sys
from typing import TextIO

from daemon.errors import PgBackupError

ANSWER_TIMEOUT_SECONDS = 300.0


class NotConfirmed(PgBackupError):
    """A destructive step was not confirmed."""

    exit_code = 2


def confirm(steps: list[str], yes: bool, stdin: TextIO | None = None, stderr: TextIO | None = None,
            timeout: float = ANSWER_TIMEOUT_SECONDS) -> None:
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
    stderr.write(f"Type 'yes' within {timeout:g} s to continue: ")
    stderr.flush()
    if not _answer_arrives(stdin, timeout):
        stderr.write("\n")
        raise NotConfirmed(f"no answer within {timeout:g} s; nothing was changed (the backup lock is released, "
                           "scheduled backups go on)")
    if stdin.readline().strip() != "yes":
        raise NotConfirmed("not confirmed; nothing was changed")


def _answer_arrives(stdin: TextIO, timeout: float) -> bool:
    """Whether a line can be read from ``stdin`` within ``timeout`` seconds."""
    try:
        stdin.fileno()
    except (OSError, ValueError):  # an in-memory stream: whatever it holds is there already
        return True
    return bool(select.select([stdin], [], [], timeout)[0])
