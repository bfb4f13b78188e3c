"""SIGTERM and SIGINT for the one-shot commands (`pgbackup backup ...`, `restore`, `verify`,
`prune`): the same stop the daemon makes, for a deploy script's timeout or a Ctrl-C.

The first signal sets the cancel event (a running dump is then stopped in the database
container by its transport, see ``sources.transport.stopped_on``) and raises ``Interrupted``
in the main thread, so whatever the command is doing unwinds through its cleanups: the hidden
``.partial`` is removed, an S3 upload aborted, a restore's staging database dropped. Further
signals while that happens are only logged: a second Ctrl-C must not cut a cleanup short.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from daemon.logs import get_logger

log = get_logger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """A one-shot command was asked to stop by a signal (a KeyboardInterrupt, so that no
    ``except Exception`` on the way mistakes it for a failure and carries on)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopOnSignals:
    """The stop of a one-shot command: ``cancel`` for the threads, ``Interrupted`` for the main one."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.signum: int | None = None

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            log.warning("stop_already_requested", signal=name, hint="cleaning up; it ends by itself")
            return
        self.signum = signum
        log.warning("stop_requested", signal=name)
        self.cancel.set()
        raise Interrupted(signum)

    def exit_code(self, default: int) -> int:
        """128 + the signal once one arrived (143 for SIGTERM, 130 for SIGINT), else ``default``."""
        return default if self.signum is None else 128 + self.signum
