"""/metrics, /healthz and the status page (/) on METRICS_PORT, served from a background thread.

Read-only: GET and HEAD are answered, every other method gets 405."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.monitoring.statuspage import CONTENT_SECURITY_POLICY

# Seconds a client may take to send its request: a connection that stays silent would
# otherwise hold its thread for ever.
REQUEST_TIMEOUT_SECONDS = 30.0
ALLOWED_METHODS = "GET, HEAD"
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def make_handler(
    metrics: Metrics, health: HealthState, clock: Callable[[], datetime], before_response: Callable[[], object],
    status_page: Callable[[datetime], str] | None = None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "pgbackup"
        timeout = REQUEST_TIMEOUT_SECONDS

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._respond(with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._respond(with_body=False)

        def __getattr__(self, name: str) -> Callable[[], None]:
            # http.server looks up do_<METHOD>: any method but GET and HEAD is refused.
            if name.startswith("do_"):
                return self._refuse_method
            raise AttributeError(name)

        def _refuse_method(self) -> None:
            self.close_connection = True  # its body, if any, is never read
            self._send(405, "text/plain; charset=utf-8", b"method not allowed: this server only reads\n", True,
                       {"Allow": ALLOWED_METHODS})

        def _respond(self, with_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            before_response()
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.render(), with_body)
            elif path == "/healthz":
                healthy, body = health.verdict(clock())
                self._send(200 if healthy else 503, "application/json", json.dumps(body).encode(), with_body)
            elif path == "/" and status_page is not None:
                page = status_page(clock()).encode()
                self._send(200, "text/html; charset=utf-8", page, with_body, PAGE_HEADERS)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /, /metrics or /healthz\n", with_body)

        def _send(self, status: int, content_type: str, body: bytes, with_body: bool,
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the backup log

    return Handler


def start_http_server(
    address: str, port: int, metrics: Metrics, health: HealthState,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    before_response: Callable[[], object] = lambda: None,
    status_page: Callable[[datetime], str] | None = None,
) -> ThreadingHTTPServer:
    """``status_page``: the HTML of / at a given time (statuspage.render_page of a StatusSource's report)."""
    handler = make_handler(metrics, health, clock, before_response, status_page)
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
