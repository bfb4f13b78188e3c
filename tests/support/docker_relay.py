"""A recording relay in front of the Docker engine: it listens on 127.0.0.1 (the client is
pointed at it with DOCKER_HOST=tcp://127.0.0.1:PORT), passes every byte on to the engine's
unix socket unchanged, and records each request's method and path (and the body of
POST /containers/create) as it goes by.

Requests are read as HTTP/1.1 from the client's side of each connection: after the head,
a body of Content-Length bytes or of chunks is skipped; a request that asks for a
connection upgrade (docker exec's start, which then carries a raw stream) ends the
parsing of that connection.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

ENGINE_SOCKET = "/var/run/docker.sock"
BLOCK_BYTES = 65536
CREATE_PATH_SUFFIX = "/containers/create"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the API version prefix the client sent (/v1.44/...), without the query
    query: str
    body: bytes = b""  # kept for POST /containers/create only


class RequestParser:
    """Request heads out of one connection's client-to-engine bytes, fed in any pieces."""

    def __init__(self, record: list[Request], lock: threading.Lock):
        self.record = record
        self.lock = lock
        self.buffer = b""
        self.raw = False  # an upgraded connection: no more HTTP
        self.skip = 0  # body bytes still to pass over
        self.chunked = False
        self.keep_body: tuple[str, str, str] | None = None
        self.body = b""

    def feed(self, data: bytes) -> None:
        if self.raw:
            return
        self.buffer += data
        while self._step():
            pass

    def _step(self) -> bool:
        """Take one thing out of the buffer; False when more bytes are needed."""
        if self.skip:
            taken = self.buffer[:self.skip]
            self.buffer = self.buffer[self.skip:]
            self.skip -= len(taken)
            if self.keep_body is not None:
                self.body += taken
            if self.skip == 0 and not self.chunked:
                self._finish_body()
            return bool(self.buffer) and self.skip == 0
        if self.chunked:
            return self._chunk_header()
        return self._head()

    def _head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4:]
        request_line, *header_lines = head.split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in header_lines)}
        url = urlsplit(target)
        if method == "POST" and url.path.endswith(CREATE_PATH_SUFFIX):
            self.keep_body, self.body = (method, url.path, url.query), b""
        else:
            self._add(Request(method, url.path, url.query))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            self.chunked = True
        else:
            self.skip = int(headers.get("content-length") or 0)
            if self.skip == 0:
                self._finish_body()
        if "upgrade" in headers.get("connection", "").lower():
            self.raw = True
            return False
        return True

    def _chunk_header(self) -> bool:
        end = self.buffer.find(b"\r\n")
        if end < 0:
            return False
        size = int(self.buffer[:end].split(b";")[0], 16)
        self.buffer = self.buffer[end + 2:]
        if size == 0:
            self.chunked = False
            self.skip = 2  # the empty trailer's CRLF (trailers are never sent by the SDK)
            return True
        self.skip = size + 2
        return True

    def _finish_body(self) -> None:
        if self.keep_body is not None:
            method, path, query = self.keep_body
            self._add(Request(method, path, query, self.body))
            self.keep_body, self.body = None, b""

    def _add(self, request: Request) -> None:
        with self.lock:
            self.record.append(request)


class DockerRelay:
    """The relay; ``requests`` grows as calls pass. Use as a context manager."""

    def __init__(self, engine_socket: str = ENGINE_SOCKET):
        self.engine_socket = engine_socket
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="docker-relay", daemon=True)

    @property
    def docker_host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def __enter__(self) -> DockerRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closed.set()
        self._listener.close()

    def take(self) -> list[Request]:
        """The requests recorded since the last take."""
        with self._lock:
            taken, self.requests[:] = list(self.requests), []
        return taken

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(self.engine_socket)
            parser = RequestParser(self.requests, self._lock)
            threading.Thread(target=_pump, args=(client, engine, parser), daemon=True).start()
            threading.Thread(target=_pump, args=(engine, client, None), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket, parser: RequestParser | None) -> None:
    """Copy ``source`` to ``sink`` until it ends; a half-close is passed on as one."""
    try:
        while data := source.recv(BLOCK_BYTES):
            if parser is not None:
                parser.feed(data)
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        for end in (source, sink):
            try:
                end.close()
            except OSError:
                pass
