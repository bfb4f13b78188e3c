"""Delivery: one JSON POST per channel with a hard deadline, failures logged and counted."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

from daemon import __version__
from daemon.logs import get_logger, redactor
from daemon.monitoring.metrics import Metrics
from daemon.notify.channels import Channel
from daemon.notify.message import Notice

log = get_logger(__name__)


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


class Notifier:
    def __init__(self, channels: list[Channel], metrics: Metrics, timeout: float, on_success: bool):
        self.channels = channels
        self.metrics = metrics
        self.timeout = timeout
        self.on_success = on_success
        for channel in channels:  # at 0 from the start, so that increase() sees the first failure
            metrics.notification_failures.labels(channel.name)

    def wants(self, notice: Notice) -> bool:
        return bool(self.channels) and (notice.failed or self.on_success)

    def send(self, notice: Notice) -> dict[str, bool]:
        """Deliver to every channel; returns channel -> delivered. Never raises."""
        if not self.wants(notice):
            return {}
        notice = notice.redacted(redactor.scrub)  # a reason quoting stderr may hold a secret
        return {channel.name: self._deliver(channel, notice) for channel in self.channels}

    def _deliver(self, channel: Channel, notice: Notice) -> bool:
        error = deliver(f"notify-{channel.name}", self.timeout,
                        lambda: post_json(channel.url, channel.body(notice), self.timeout))
        if error is None:
            log.info("notification_sent", channel=channel.name, status=notice.status)
            return True
        log.warning("notification_failed", channel=channel.name, error=error)
        self.metrics.notification_failures.labels(channel.name).inc()
        return False


def deliver(name: str, timeout: float, send: Callable[[], object]) -> str | None:
    """Call ``send`` (one POST) in a thread given ``timeout`` + 1 s in all; returns None when it
    succeeded, else the reason (never the URL). Never raises."""
    result: dict[str, object] = {}

    def attempt() -> None:
        try:
            result["status"] = send()
        except DeliveryFailed as error:
            result["error"] = str(error)
        except Exception as error:  # noqa: BLE001 - a bug must not break a backup either
            result["error"] = type(error).__name__

    # urllib's timeout bounds each socket operation; the thread's deadline bounds the whole.
    worker = threading.Thread(target=attempt, name=name, daemon=True)
    worker.start()
    worker.join(timeout + 1)
    if "status" in result:
        return None
    return str(result.get("error") or f"no answer within {timeout:g} s")
