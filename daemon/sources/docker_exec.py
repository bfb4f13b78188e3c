"""Running tools inside the database container through the Docker SDK (`docker exec`).

The server's own pg_dump is used, so client and server versions always match. The exit
status comes from inspecting the exec once its output stream has ended; it is never
assumed. Each command runs in its own process group inside the container (an exec is a
session leader), which lets an aborted run stop it and everything it started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import BinaryIO

import docker
import docker.errors
from docker.models.containers import Container

from daemon.errors import CommandFailed, ConnectionFailed
from daemon.sources.transport import StderrTail, collect, stopped_on

# Prints the process id on stderr first, then becomes the command.
_ANNOUNCE_PID = 'echo "pgbackup-pid $$" >&2; exec "$@"'
_PID_PREFIX = "pgbackup-pid "
INSPECT_WAIT_SECONDS = 10
PID_WAIT_SECONDS = 5  # a cancel right after the start waits this long for the announced pid


class DockerExecTransport:
    is_local = False

    def __init__(self, client: docker.DockerClient, container_name: str):
        self.client = client
        self.container_name = container_name
        self.description = f"docker exec into container {container_name!r}"

    def running_container(self) -> Container:
        try:
            container = self.client.containers.get(self.container_name)
        except docker.errors.NotFound:
            raise ConnectionFailed(
                f"container {self.container_name!r} does not exist (POSTGRES_CONTAINER); "
                "check the name with 'docker ps -a'"
            ) from None
        except docker.errors.DockerException as error:
            raise ConnectionFailed(f"cannot reach the Docker engine: {error}") from None
        if container.status != "running":
            raise ConnectionFailed(
                f"container {self.container_name!r} is not running (status: {container.status})"
            )
        return container

    @contextmanager
    def stream(self, argv: Sequence[str], env: Mapping[str, str] | None = None, *,
               cancel: threading.Event | None = None) -> Iterator[Iterator[bytes]]:
        container = self.running_container()
        api = self.client.api
        command = announcing_pid(argv)
        try:
            exec_id = api.exec_create(
                container.id, command, stdout=True, stderr=True, environment=dict(env or {})
            )["Id"]
            frames = exec_frames(api, exec_id)
        except docker.errors.DockerException as error:
            raise ConnectionFailed(f"docker exec into {self.container_name!r} failed: {error}") from None
        tail = PidAwareTail()
        state = {"exhausted": False}
        try:
            with stopped_on(cancel, lambda: self.stop(container, tail.wait_for_pid(PID_WAIT_SECONDS))):
                yield _stdout_of(frames, tail, state)
        except BaseException:
            self.stop(container, tail.pid)
            _drain(frames, tail)
            raise
        if not state["exhausted"]:
            self.stop(container, tail.pid)
            _drain(frames, tail)
            raise CommandFailed(argv, None, tail.text(), reason="output was not read to the end")
        returncode = self.exit_code(exec_id)
        if returncode is None:
            # The stream ended (or broke off) while the command still runs.
            self.stop(container, tail.pid)
            raise CommandFailed(argv, None, tail.text(), reason="output stream ended before the command did")
        if returncode != 0:
            raise CommandFailed(argv, returncode, tail.text())

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> bytes:
        return collect(self, argv, env)

    def exit_code(self, exec_id: str) -> int | None:
        """The exec's exit status, waiting up to INSPECT_WAIT_SECONDS for it to end; None if it still runs."""
        deadline = time.monotonic() + INSPECT_WAIT_SECONDS
        while True:
            info = self.client.api.exec_inspect(exec_id)
            if not info.get("Running") or time.monotonic() > deadline:
                return info.get("ExitCode")
            time.sleep(0.05)

    def stop(self, container: Container, pid: int | None) -> None:
        """Stop an abandoned command's whole process group inside the container (``pid`` as
        PidAwareTail read it; nothing to do without one), leaves first: see STOP_GROUP_LEAVES_FIRST."""
        if pid is None:
            return
        try:
            container.exec_run(["sh", "-c", STOP_GROUP_LEAVES_FIRST, "pgbackup-stop", str(pid)], detach=True)
        except docker.errors.DockerException:
            pass


# Signals only the processes of group $1 that have no child left in it, again each second, until
# the group is gone (TERM for 10 s, then KILL). Never the whole group at once: in the official
# image the container's PID 1 is the postmaster, which adopts every orphan, and an orphan that
# then dies of a signal is taken for a crashed backend: PostgreSQL ends every session and runs
# crash recovery (seen with pg_dumpall: its `sh -c pg_dump` child, orphaned by a group-wide
# SIGTERM). A parent whose child ends exits by itself, with a status, and is never orphaned; the
# group's leader is the exec's own process, whose parent is outside the container.
STOP_GROUP_LEAVES_FIRST = r"""
group=$1
members() {
  for stat in /proc/[0-9]*/stat; do
    line=$(cat "$stat" 2>/dev/null) || continue
    set -- ${line##*) }
    if [ "$3" = "$group" ] && [ "$1" != Z ]; then pid=${stat#/proc/}; echo "${pid%/stat} $2"; fi
  done
}
signal_leaves() {
  found=$(members)
  [ -n "$found" ] || return 1
  for pid in $(echo "$found" | cut -d' ' -f1); do
    echo "$found" | cut -d' ' -f2 | grep -qx "$pid" || kill -"$1" "$pid" 2>/dev/null
  done
}
for round in 1 2 3 4 5 6 7 8 9 10; do signal_leaves TERM || exit 0; sleep 1; done
for round in 1 2 3 4 5 6 7 8 9 10; do signal_leaves KILL || exit 0; sleep 1; done
"""


def announcing_pid(argv: Sequence[str]) -> list[str]:
    """``argv`` run through a shell that first prints its process id on stderr, then becomes
    the command: read back by PidAwareTail, it lets ``stop`` end the command's process group."""
    return ["sh", "-c", _ANNOUNCE_PID, "pgbackup", *argv]


class PidAwareTail(StderrTail):
    """A stderr tail that takes the process id announced by ``announcing_pid`` out of the stream."""

    def __init__(self) -> None:
        super().__init__()
        self.pid: int | None = None
        self._head = b""
        self._announced = threading.Event()

    def wait_for_pid(self, timeout: float) -> int | None:
        """The announced pid, waiting up to ``timeout`` seconds for the stream to bring it."""
        self._announced.wait(timeout)
        return self.pid

    def feed(self, data: bytes) -> None:
        if self.pid is None and self._head is not None:
            self._head += data
            line, newline, rest = self._head.partition(b"\n")
            if not newline:
                return
            self._head = None
            text = line.decode("ascii", "replace")
            if text.startswith(_PID_PREFIX) and text[len(_PID_PREFIX):].isdigit():
                self.pid = int(text[len(_PID_PREFIX):])
                data = rest
            else:
                data = line + newline + rest
            self._announced.set()
        if data:
            super().feed(data)


Frames = Iterable[tuple[bytes | None, bytes | None]]  # (stdout, stderr) pairs of a demultiplexed exec stream

STDOUT_FRAME, STDERR_FRAME = 1, 2


def exec_frames(api: docker.APIClient, exec_id: str) -> Iterator[tuple[bytes | None, bytes | None]]:
    """The exec's output as (stdout, stderr) pairs, read through the HTTP response's own
    buffered reader.

    docker-py's ``exec_start(stream=True)`` reads the hijacked stream from the raw socket
    beneath that reader, so bytes the reader already took in with the 101 response's headers are
    lost. Through a proxy that forwards the headers and the first frames in one segment
    (DOCKER_HOST=tcp:// to the socket proxy) a quick command's whole output went missing: an
    empty `SHOW server_version_num`, an empty `mktemp -d`.
    """
    response = api._post_json(  # noqa: SLF001 - the request exec_start makes, kept to read it ourselves
        api._url("/exec/{0}/start", exec_id), headers={"Connection": "Upgrade", "Upgrade": "tcp"},
        data={"Tty": False, "Detach": False}, stream=True,
    )
    api._raise_for_status(response)
    reader = response.raw._fp.fp  # the buffered reader http.client parsed the headers with
    try:
        while True:
            header = _read_exactly(reader, 8)
            if len(header) < 8:
                return
            payload = _read_exactly(reader, int.from_bytes(header[4:8], "big"))
            if header[0] == STDERR_FRAME:
                yield None, payload
            else:
                yield payload, None
    finally:
        response.close()


def _read_exactly(reader: BinaryIO, size: int) -> bytes:
    """``size`` bytes, or fewer only at the end of the stream."""
    parts, wanted = [], size
    while wanted > 0:
        part = reader.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def _stdout_of(frames: Frames, tail: StderrTail, state: dict) -> Iterator[bytes]:
    for stdout, stderr in frames:
        if stderr:
            tail.feed(stderr)
        if stdout:
            yield stdout
    state["exhausted"] = True


def _drain(frames: Frames, tail: StderrTail, limit_seconds: float = 15) -> None:
    deadline = time.monotonic() + limit_seconds
    try:
        for _stdout, stderr in frames:
            if stderr:
                tail.feed(stderr)
            if time.monotonic() > deadline:
                break
    except Exception:
        pass
    close = getattr(frames, "close", None)
    if close:
        close()
