"""The channels a notice goes to: each knows its name (the metric label) and its request body."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from daemon.notify.message import Notice
from daemon.settings import Settings


@dataclass(frozen=True)
class Channel:
    name: str  # slack | webhook
    url: str = ""  # a secret: never logged
    body: Callable[[Notice], dict] = Notice.payload

    def __repr__(self) -> str:
        return f"Channel({self.name!r})"


def slack_body(notice: Notice) -> dict:
    """Slack incoming webhook: a text message (mrkdwn), failures marked."""
    marker = ":x:" if notice.failed else ":white_check_mark:"
    return {"text": f"{marker} *{notice.title()}*\n" + "\n".join(notice.lines())}


def channels_from_settings(settings: Settings) -> list[Channel]:
    channels = []
    if settings.slack_webhook_url is not None:
        channels.append(Channel("slack", settings.slack_webhook_url.get_secret_value(), slack_body))
    if settings.webhook_url is not None:
        channels.append(Channel("webhook", settings.webhook_url.get_secret_value(), Notice.payload))
    return channels
