"""One hook command: ``/bin/sh -c COMMAND`` in its own process group, with a deadline.

A string run by the shell is what a compose file's ``HOOK_AFTER_BACKUP: "curl ... && ..."``
means, so the command is never split into argv here. The process gets its own session, so the
deadline can end everything it started (``sleep`` in a pipeline, a background job) and a signal
meant for the hook never reaches the daemon. Its output (stdout and stderr together) is read as
it comes and only the last OUTPUT_TAIL_BYTES are kept: a chatty hook cannot fill the memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

SHELL = "/bin/sh"
OUTPUT_TAIL_BYTES = 4096
TERMINATE_GRACE_SECONDS = 5  # between SIGTERM and SIGKILL of the group after the deadline
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class CommandResult:
    returncode: int | None  # None: it outlived its deadline (or the daemon stopped) and was killed
    output: str  # the last OUTPUT_TAIL_BYTES of stdout and stderr
    seconds: float
    stopped_because: str = ""  # why it was killed: "timeout" | "cancelled"

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_shell(command: str, environment: Mapping[str, str], timeout: float,
              cancel: threading.Event | None = None) -> CommandResult:
    """Run ``command`` to its end, or kill its process group after ``timeout`` seconds or when
    ``cancel`` is set. Raises OSError when the shell cannot be started."""
    started = time.monotonic()
    process = subprocess.Popen(
        (SHELL, "-c", command), env=dict(environment), cwd="/", stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    tail = OutputTail(process.stdout)
    stopped_because = _wait(process, started + timeout, cancel)
    if stopped_because:
        _kill_group(process)
    tail.finish()
    return CommandResult(
        None if stopped_because else process.returncode, tail.text(), time.monotonic() - started, stopped_because
    )


def _wait(process: subprocess.Popen, deadline: float, cancel: threading.Event | None) -> str:
    """Wait for the shell to exit; returns why it must be killed instead ("" when it exited)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        if cancel is not None and cancel.is_set():
            return "cancelled"
        try:
            process.wait(min(POLL_SECONDS, remaining))
            return ""
        except subprocess.TimeoutExpired:
            continue


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM to the whole group, SIGKILL to what is left after the grace period."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process, signal.SIGKILL)  # also the children that outlived the shell
    process.wait()


def _signal_group(process: subprocess.Popen, signum: signal.Signals) -> None:
    try:
        os.killpg(process.pid, signum)  # the group id is the shell's pid (start_new_session)
    except ProcessLookupError:
        pass  # the group has ended


class OutputTail:
    """Reads a stream to its end in a thread, keeping its last OUTPUT_TAIL_BYTES."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.kept = bytearray()
        self.thread = threading.Thread(target=self._read, name="hook-output", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.stream.read1(65536), b""):
            self.kept += chunk
            del self.kept[:-OUTPUT_TAIL_BYTES]
        self.stream.close()

    def finish(self) -> None:
        """Give the reader a moment for the last output; a background job the hook left running
        may hold the pipe open, and is not waited for."""
        self.thread.join(1)

    def text(self) -> str:
        return bytes(self.kept).decode("utf-8", errors="replace").strip()
