"""One HTTP POST with a timeout per socket operation; a failure says why, never with the URL."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from daemon import __version__


class DeliveryFailed(Exception):
    """A channel did not accept the notice; the message never contains the URL."""


def post_json(url: str, body: dict, timeout: float) -> int:
    """POST ``body`` as JSON; returns the HTTP status or raises DeliveryFailed."""
    return post(url, json.dumps(body).encode("utf-8"), "application/json", timeout)


def post(url: str, data: bytes, content_type: str, timeout: float) -> int:
    """POST ``data``; returns the HTTP status or raises DeliveryFailed."""
    request = urllib.request.Request(
        url, data=data, method="POST",
        headers={"Content-Type": content_type, "User-Agent": f"pgbackup/{__version__}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            return response.status
    except urllib.error.HTTPError as error:
        raise DeliveryFailed(f"HTTP status {error.code}") from None
    except urllib.error.URLError as error:
        raise DeliveryFailed(f"{type(error.reason).__name__}: {_reason(error.reason)}") from None
    except (OSError, ValueError) as error:
        raise DeliveryFailed(f"{type(error).__name__}: {_reason(error)}") from None


def _reason(error: object) -> str:
    """A short reason that cannot contain the URL (urllib puts it into some messages)."""
    if isinstance(error, ValueError):
        return "the URL is not valid"
    strerror = getattr(error, "strerror", None)
    if strerror:
        return strerror
    if isinstance(error, TimeoutError):
        return "timed out"
    return type(error).__name__
