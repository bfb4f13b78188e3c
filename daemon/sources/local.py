"""Running client tools as child processes of the daemon (the TCP connection method)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from daemon.errors import CommandFailed
from daemon.sources.transport import CHUNK_SIZE, StderrTail, collect, stopped_on

TERMINATE_GRACE_SECONDS = 10
# pg_dump writes its output a few KB at a time. Read one by one, that is ~200,000 reads and
# wake-ups for a 1.5 GB dump, which cost the two processes about 3 CPU-seconds (measured,
# docs/benchmarks.md). So the pipe is made large, and after a short read the reader waits a
# moment for more: reads of ~200 KB, a few thousand per dump, and the writer never blocks
# (1 MiB of pipe lasts longer than the wait at any speed pg_dump reaches).
PIPE_SIZE = 1 << 20
SHORT_READ = 256 * 1024
SHORT_READ_WAIT_SECONDS = 0.002
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class LocalProcessTransport:
    description = "local process"
    is_local = True

    def __init__(self, base_env: Mapping[str, str] | None = None):
        self._base_env = dict(base_env or {})

    @property
    def base_env(self) -> dict[str, str]:
        """The fixed environment every child process starts from (PATH, TMPDIR, locale)."""
        return dict(self._base_env)

    @contextmanager
    def stream(self, argv: Sequence[str], env: Mapping[str, str] | None = None, *,
               cancel: threading.Event | None = None) -> Iterator[Iterator[bytes]]:
        tail = StderrTail()
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**self._base_env, **(env or {})},
                start_new_session=True,
            )
        except OSError as error:
            raise CommandFailed(argv, None, "", reason=f"cannot start: {error.strerror}") from None
        reader = threading.Thread(target=_drain_into, args=(process.stderr, tail), daemon=True)
        reader.start()
        state = {"exhausted": False}
        try:
            with stopped_on(cancel, lambda: _signal_group(process)):
                yield _read_stdout(process, state)
        except BaseException:
            _stop(process)
            reader.join(timeout=5)
            raise
        if not state["exhausted"]:
            _stop(process)
            reader.join(timeout=5)
            raise CommandFailed(argv, process.returncode, tail.text(), reason="output was not read to the end")
        returncode = process.wait()
        reader.join(timeout=5)
        if returncode != 0:
            raise CommandFailed(argv, returncode, tail.text())

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> bytes:
        return collect(self, argv, env)


def _read_stdout(process: subprocess.Popen, state: dict) -> Iterator[bytes]:
    fd = process.stdout.fileno()
    _enlarge_pipe(fd)
    while True:
        chunk = os.read(fd, CHUNK_SIZE)
        if not chunk:
            break
        yield chunk
        if len(chunk) < SHORT_READ:
            time.sleep(SHORT_READ_WAIT_SECONDS)
    process.stdout.close()
    state["exhausted"] = True


def _enlarge_pipe(fd: int) -> None:
    """Best effort: a kernel that refuses (pipe-max-size) keeps the default size."""
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass


def _drain_into(pipe: BinaryIO, tail: StderrTail) -> None:
    for block in iter(lambda: pipe.read1(65536), b""):
        tail.feed(block)
    pipe.close()


def _signal_group(process: subprocess.Popen) -> None:
    """Stop the command's session from another thread than its reader: signals only (closing
    the pipe under a blocked read would free its descriptor for reuse); the reader then sees the
    end of the output."""
    for sig, wait in ((signal.SIGTERM, TERMINATE_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _stop(process: subprocess.Popen) -> None:
    """Stop the command and everything it started (it runs in its own session)."""
    if process.stdout and not process.stdout.closed:
        process.stdout.close()
    if process.poll() is None:
        _signal_group(process)
