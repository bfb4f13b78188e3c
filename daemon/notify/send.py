"""Delivery: each channel given a hard deadline, failures logged and counted."""

from __future__ import annotations

import threading
from collections.abc import Callable

from daemon.logs import get_logger, redactor
from daemon.monitoring.metrics import Metrics
from daemon.notify.channels import Channel
from daemon.notify.http import DeliveryFailed
from daemon.notify.message import Notice

log = get_logger(__name__)


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
        """Deliver to every channel; returns channel name -> delivered (by all of that name's
        channels: NOTIFY_URLS may hold two mailto:// URLs). Never raises."""
        if not self.wants(notice):
            return {}
        notice = notice.redacted(redactor.scrub)  # a reason quoting stderr may hold a secret
        delivered: dict[str, bool] = {}
        for channel in self.channels:
            delivered[channel.name] = self._deliver(channel, notice) and delivered.get(channel.name, True)
        return delivered

    def _deliver(self, channel: Channel, notice: Notice) -> bool:
        error = deliver(f"notify-{channel.name}", self.timeout, lambda: channel.send(notice, self.timeout))
        if error is None:
            log.info("notification_sent", channel=channel.name, status=notice.status)
            return True
        log.warning("notification_failed", channel=channel.name, error=error)
        self.metrics.notification_failures.labels(channel.name).inc()
        return False


def deliver(name: str, timeout: float, send: Callable[[], object]) -> str | None:
    """Call ``send`` (one delivery) in a thread given ``timeout`` + 1 s in all; returns None when
    it succeeded, else the reason (never the URL). Never raises."""
    result: dict[str, object] = {}

    def attempt() -> None:
        try:
            send()
            result["delivered"] = True
        except DeliveryFailed as error:
            result["error"] = str(error)
        except Exception as error:  # noqa: BLE001 - a bug must not break a backup either
            result["error"] = type(error).__name__

    # Each client's own timeout bounds a socket operation; the thread's deadline bounds the whole.
    worker = threading.Thread(target=attempt, name=name, daemon=True)
    worker.start()
    worker.join(timeout + 1)
    if "delivered" in result:
        return None
    return str(result.get("error") or f"no answer within {timeout:g} s")
