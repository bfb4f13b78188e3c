"""/metrics and /healthz on METRICS_PORT, served from a background thread."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics

# Seconds a client may take to send its request: a connection that stays silent would
# otherwise hold its thread for ever.
REQUEST_TIMEOUT_SECONDS = 30.0


def make_handler(
    metrics: Metrics, health: HealthState, clock: Callable[[], datetime], before_response: Callable[[], object]
):
    class Handler(BaseHTTPRequestHandler):
        server_version = "pgbackup"
        timeout = REQUEST_TIMEOUT_SECONDS

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._respond(with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._respond(with_body=False)

        def _respond(self, with_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            before_response()
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.render(), with_body)
            elif path == "/healthz":
                healthy, body = health.verdict(clock())
                self._send(200 if healthy else 503, "application/json", json.dumps(body).encode(), with_body)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n", with_body)

        def _send(self, status: int, content_type: str, body: bytes, with_body: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
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
) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, port), make_handler(metrics, health, clock, before_response))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
