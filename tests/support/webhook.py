"""A real HTTP server on 127.0.0.1 that records the webhook requests it receives.

RecordingServer(status=200) answers every POST with ``status``; ``hang=True`` holds every
request open until the server is closed (a webhook endpoint that never answers). A JSON body
is recorded parsed, any other body (a dead-man ping's text) as text.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict
    body: dict | str


@dataclass
class RecordingServer:
    status: int = 200
    hang: bool = False
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self):
        self.release = threading.Event()
        self.arrived = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                recorder.requests.append(Received(self.path, dict(self.headers), _body(self.headers.get("Content-Type"), raw)))
                recorder.arrived.set()
                if recorder.hang:
                    recorder.release.wait(60)
                    return
                self.send_response(recorder.status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if recorder.status < 300 else b"server error")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hooks/T000/B000/secret-token-123") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _body(content_type: str | None, raw: bytes) -> dict | str:
    if "json" in (content_type or "application/json"):
        return json.loads(raw or b"{}")
    return raw.decode("utf-8")
