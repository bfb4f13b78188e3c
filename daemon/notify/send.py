"""Delivery: one JSON POST per channel with a hard deadline, failures logged and counted."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from daemon import __version__
from daemon.logs import get_logger
from daemon.monitoring.metrics import Metrics
from daemon.notify.channels import Channel
from daemon.notify.message import Notice

log = get_logger(__name__)


class DeliveryFailed(Exception):
    """A channel did not accept the notice; the message never contains the URL."""


def post_json(url: str, body: dict, timeout: float) -> int:
    """POST ``body`` as JSON; returns the HTTP status or raises DeliveryFailed."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"pgbackup/{__version__}"},
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
        return {channel.name: self._deliver(channel, notice) for channel in self.channels}

    def _deliver(self, channel: Channel, notice: Notice) -> bool:
        result: dict[str, object] = {}

        def attempt() -> None:
            try:
                result["status"] = post_json(channel.url, channel.body(notice), self.timeout)
            except DeliveryFailed as error:
                result["error"] = str(error)
            except Exception as error:  # noqa: BLE001 - a bug must not break a backup either
                result["error"] = type(error).__name__

        # urllib's timeout bounds each socket operation; the thread's deadline bounds the whole.
        worker = threading.Thread(target=attempt, name=f"notify-{channel.name}", daemon=True)
        worker.start()
        worker.join(self.timeout + 1)
        if "status" in result:
            log.info("notification_sent", channel=channel.name, status=notice.status)
            return True
        error = result.get("error") or f"no answer within {self.timeout:g} s"
        log.warning("notification_failed", channel=channel.name, error=error)
        self.metrics.notification_failures.labels(channel.name).inc()
        return False
