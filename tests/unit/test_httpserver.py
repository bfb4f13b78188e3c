"""/metrics, /healthz and the status page served on a real socket on loopback."""

from __future__ import annotations

import http.client
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest

from daemon.monitoring import httpserver
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.monitoring.statuspage import CONTENT_SECURITY_POLICY

NOW = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(httpserver, "REQUEST_TIMEOUT_SECONDS", 0.5)
    started = httpserver.start_http_server("127.0.0.1", 0, Metrics(), HealthState(NOW, timedelta(hours=24)),
                                           clock=lambda: NOW)
    yield started
    started.shutdown()
    started.server_close()


def test_head_answers_like_get_without_a_body(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    connection.request("HEAD", "/metrics")
    response = connection.getresponse()
    assert response.status == 200 and int(response.getheader("Content-Length")) > 0
    assert response.read() == b""


def test_a_silent_client_is_disconnected(server):
    """A connection that never sends its request is closed after the timeout instead of holding a thread."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as silent:
        started = time.monotonic()
        assert silent.recv(1024) == b""  # the server closed it
        assert time.monotonic() - started < 4


@pytest.fixture(scope="module")
def status_server():
    """One server for the module's requests (each shutdown waits for serve_forever's poll)."""
    started = httpserver.start_http_server("127.0.0.1", 0, Metrics(), HealthState(NOW, timedelta(hours=24)),
                                           clock=lambda: NOW, status_page=lambda now: f"<p>{now:%H:%M}</p>")
    yield started
    started.shutdown()
    started.server_close()


def request(server, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    connection.request(method, path, body=body)
    return connection.getresponse()


class TestStatusPage:
    def test_get_serves_the_page_at_the_clocks_time_with_a_strict_policy(self, status_server):
        """GET / returns the page rendered for the server's clock, as HTML that may load nothing."""
        response = request(status_server, "GET", "/")
        assert response.status == 200 and response.read() == b"<p>06:00</p>"
        assert response.getheader("Content-Type") == "text/html; charset=utf-8"
        assert response.getheader("Content-Security-Policy") == CONTENT_SECURITY_POLICY
        assert response.getheader("X-Content-Type-Options") == "nosniff"
        assert response.getheader("Cache-Control") == "no-store"

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PURGE"])
    @pytest.mark.parametrize("path", ["/", "/metrics", "/healthz"])
    def test_every_other_method_is_refused(self, status_server, method, path):
        """Nothing can be triggered: any method but GET and HEAD gets 405 and the allowed methods."""
        response = request(status_server, method, path, body=b"run=full")
        assert response.status == 405 and response.getheader("Allow") == "GET, HEAD"

    def test_without_a_page_root_is_not_found(self, server):
        """A server started without a status page answers / with 404."""
        assert request(server, "GET", "/").status == 404
