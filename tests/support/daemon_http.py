"""Reading a running daemon's /healthz and /metrics over HTTP, as Prometheus and compose do."""

from __future__ import annotations

import urllib.error
import urllib.request


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of GET ``path`` on 127.0.0.1:``port``; (0, "") while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str, labels: str) -> float | None:
    """The value of the sample of ``name`` whose line holds every comma-separated part of ``labels``."""
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(part in line for part in labels.split(",")):
            return float(line.rsplit(" ", 1)[1])
    return None
