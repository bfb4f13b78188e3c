"""Streaming an artifact into a client tool's stdin (psql, pg_restore) next to the server.

The counterpart of Transport.stream for the other direction: chunks go in as they are
read from disk (never a whole dump in memory), stderr's last lines are kept, and the
exit status is checked after stdin was closed. For docker exec the SDK's exec socket is
used with stdin attached and half-closed at the end (what ``docker exec -i`` does); for
the TCP method the tool is a child process of the daemon.
"""

from __future__ import annotations

import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import BinaryIO

import docker.errors
from docker.utils.socket import frames_iter

from daemon.errors import CommandFailed, ConnectionFailed, PgBackupError
from daemon.logs import get_logger
from daemon.sources.docker_exec import DockerExecTransport, PidAwareTail, announcing_pid
from daemon.sources.local import LocalProcessTransport
from daemon.sources.postgres import PostgresServer
from daemon.sources.transport import StderrTail

STDERR_FRAME = 2
log = get_logger(__name__)


def feed_command(server: PostgresServer, argv: Sequence[str], chunks: Iterable[bytes]) -> None:
    """Run argv with ``chunks`` as its stdin; raise CommandFailed unless it exits 0.

    An exception raised while reading ``chunks`` (a truncated artifact, a cancelled
    restore) stops the command before its input is complete, so it never sees a
    silently shortened stream.
    """
    transport, env = server.transport, server.environment()
    if isinstance(transport, DockerExecTransport):
        _feed_docker_exec(transport, argv, chunks, env)
    elif isinstance(transport, LocalProcessTransport):
        _feed_local(transport, argv, chunks, env)
    else:
        raise TypeError(f"cannot feed stdin through {transport!r}")


def _feed_local(
    transport: LocalProcessTransport, argv: Sequence[str], chunks: Iterable[bytes], env: Mapping[str, str]
) -> None:
    tail = StderrTail()
    try:
        process = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**transport.base_env, **env}, start_new_session=True,
        )
    except OSError as error:
        raise CommandFailed(argv, None, "", reason=f"cannot start: {error.strerror}") from None
    reader = threading.Thread(target=_drain_pipe, args=(process.stderr, tail), daemon=True)
    reader.start()
    try:
        for chunk in chunks:
            try:
                process.stdin.write(chunk)
            except BrokenPipeError:
                break  # the tool stopped reading: its exit status says why
        _close_quietly(process.stdin)
    except BaseException:
        _close_quietly(process.stdin)
        process.kill()
        process.wait()
        reader.join(timeout=5)
        raise
    returncode = process.wait()
    reader.join(timeout=5)
    if returncode != 0:
        raise CommandFailed(argv, returncode, tail.text())


def _drain_pipe(pipe: BinaryIO, tail: StderrTail) -> None:
    for block in iter(lambda: pipe.read1(65536), b""):
        tail.feed(block)
    pipe.close()


def _close_quietly(stream: socket.socket | BinaryIO) -> None:
    try:
        stream.close()
    except (BrokenPipeError, OSError):
        pass


def _feed_docker_exec(
    transport: DockerExecTransport, argv: Sequence[str], chunks: Iterable[bytes], env: Mapping[str, str]
) -> None:
    container = transport.running_container()
    api = transport.client.api
    command = announcing_pid(argv)
    try:
        exec_id = api.exec_create(
            container.id, command, stdin=True, stdout=True, stderr=True, environment=dict(env)
        )["Id"]
        connection = api.exec_start(exec_id, socket=True)
    except docker.errors.DockerException as error:
        raise ConnectionFailed(f"docker exec into {transport.container_name!r} failed: {error}") from None
    raw = getattr(connection, "_sock", connection)
    tail = PidAwareTail()
    ended = threading.Event()
    reader = threading.Thread(target=_read_frames, args=(connection, tail, ended), daemon=True)
    reader.start()
    try:
        for chunk in chunks:
            if ended.is_set():
                break  # the command exited early: its exit status says why
            try:
                raw.sendall(chunk)
            except OSError:
                break
        try:
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        reader.join()
    except BaseException:
        transport.stop(container, tail.pid)
        _close_quietly(connection)
        reader.join(timeout=15)
        raise
    finally:
        _close_quietly(connection)
    returncode = transport.exit_code(exec_id)
    if returncode != 0:
        raise CommandFailed(argv, returncode, tail.text())


def _read_frames(connection: socket.socket, tail: StderrTail, ended: threading.Event) -> None:
    try:
        for stream, data in frames_iter(connection, tty=False):
            if stream == STDERR_FRAME:
                tail.feed(data)
    except (OSError, ValueError):
        pass
    finally:
        ended.set()


# --- copying an archive into the container, for pg_restore -j (which needs a file) ----

# A killed restore leaves its copy behind; the daemon removes such directories at its next start
# (housekeeping/debris.py), under the backup lock that every restore holds.
SCRATCH_TEMPLATE = "/tmp/pgbackup-restore.XXXXXX"
SCRATCH_GLOB = SCRATCH_TEMPLATE.replace("X", "?")

def make_temp_dir(server: PostgresServer) -> str:
    """A fresh directory next to the server for an archive copy."""
    output = server.transport.run(["mktemp", "-d", SCRATCH_TEMPLATE])
    return output.decode().strip()


def remove_temp_dir(server: PostgresServer, path: str) -> None:
    try:
        server.transport.run(["rm", "-rf", "--", path])
    except PgBackupError as error:  # cleanup must never hide the restore's own result
        log.warning("restore_copy_left", path=path, error=str(error))


def put_stream(transport: DockerExecTransport, directory: str, tar_chunks: Iterable[bytes]) -> None:
    """Stream a tar archive into the container, extracted under ``directory``."""
    container = transport.running_container()
    try:
        ok = transport.client.api.put_archive(container.id, directory, iter(tar_chunks))
    except docker.errors.DockerException as error:
        raise ConnectionFailed(f"copying the archive into {transport.container_name!r} failed: {error}") from None
    if not ok:
        raise ConnectionFailed(f"copying the archive into {transport.container_name!r} failed")


def single_file_tar(name: str, size: int, chunks: Iterable[bytes]) -> Iterable[bytes]:
    """A tar stream of one regular file, built on the fly from its chunks."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    written = 0
    for chunk in chunks:
        written += len(chunk)
        yield chunk
    if written != size:
        raise ValueError(f"{name}: read {written} bytes, expected {size}")
    padding = (-size) % tarfile.BLOCKSIZE
    yield b"\0" * padding + b"\0" * (2 * tarfile.BLOCKSIZE)
