"""A TCP relay on loopback that throttles what clients send to its target: slow S3 on a fast
machine. Every connection shares one rate, and the bytes sent upstream are counted."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

_CHUNK = 16 * 1024


class ThrottledProxy:
    """``with ThrottledProxy("127.0.0.1", 8333, 1024 * 1024) as proxy:`` relays
    ``proxy.url`` to the target, client→target at most ``bytes_per_second`` in all."""

    def __init__(self, host: str, port: int, bytes_per_second: int):
        self.target = (host, port)
        self.bytes_per_second = bytes_per_second
        self.bytes_up = 0
        self._lock = threading.Lock()
        self._next_send = time.monotonic()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []

    def set_rate(self, bytes_per_second: int) -> None:
        """Change the rate from now on (what was already scheduled is sent at once)."""
        with self._lock:
            self.bytes_per_second = bytes_per_second
            self._next_send = time.monotonic()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> ThrottledProxy:
        threading.Thread(target=self._accept, name="throttle-accept", daemon=True).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._closed.set()
        self._listener.close()
        for sock in list(self._sockets):
            _close(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._relay, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, False), daemon=True).start()

    def _relay(self, source: socket.socket, destination: socket.socket, throttled: bool) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                if throttled:
                    self._wait_for_budget(len(data))
                destination.sendall(data)
                if throttled:
                    with self._lock:
                        self.bytes_up += len(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(destination)

    def _wait_for_budget(self, size: int) -> None:
        """Sleep until ``size`` more bytes fit the rate (one schedule shared by every connection)."""
        with self._lock:
            now = time.monotonic()
            send_at = max(now, self._next_send)
            self._next_send = send_at + size / self.bytes_per_second
        time.sleep(max(0.0, send_at - time.monotonic()))


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
