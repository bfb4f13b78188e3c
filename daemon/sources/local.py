"""Running client tools as child processes of the daemon (the TCP connection method)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from daemon.errors import CommandFailed
from daemon.sources.transport import CHUNK_SIZE, StderrTail, collect

TERMINATE_GRACE_SECONDS = 10


class LocalProcessTransport:
    description = "local process"
    is_local = True

    def __init__(self, base_env: Mapping[str, str] | None = None):
        self._base_env = dict(base_env or {})

    @contextmanager
    def stream(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Iterator[Iterator[bytes]]:
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
    while True:
        chunk = os.read(fd, CHUNK_SIZE)
        if not chunk:
            break
        yield chunk
    process.stdout.close()
    state["exhausted"] = True


def _drain_into(pipe, tail: StderrTail) -> None:
    for block in iter(lambda: pipe.read1(65536), b""):
        tail.feed(block)
    pipe.close()


def _stop(process: subprocess.Popen) -> None:
    """Stop the command and everything it started (it runs in its own session)."""
    if process.stdout and not process.stdout.closed:
        process.stdout.close()
    if process.poll() is not None:
        return
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
