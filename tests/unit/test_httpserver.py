"""/metrics and /healthz served on a real socket on loopback."""

from __future__ import annotations

import http.client
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest

from daemon.monitoring import httpserver
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics

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
