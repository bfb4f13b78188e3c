"""The channels a notice goes to: each knows its name (the metric label) and how it sends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from daemon.notify import apprise_channel
from daemon.notify.http import post_json
from daemon.notify.message import Notice
from daemon.settings import Settings

# Delivers a notice within the timeout (seconds), or raises notify.http.DeliveryFailed.
Send = Callable[[Notice, float], object]


@dataclass(frozen=True)
class Channel:
    name: str  # slack | webhook | an Apprise URL's scheme (mailto, ntfy, ...)
    send: Send  # holds the URL, a secret: never logged

    def __repr__(self) -> str:
        return f"Channel({self.name!r})"


def slack_body(notice: Notice) -> dict:
    """Slack incoming webhook: a text message (mrkdwn), failures marked."""
    marker = ":x:" if notice.failed else ":white_check_mark:"
    return {"text": f"{marker} *{notice.title()}*\n" + "\n".join(notice.lines())}


def post_notice(url: str, body: Callable[[Notice], dict], notice: Notice, timeout: float) -> int:
    """A JSON webhook: ``body(notice)`` POSTed to ``url``."""
    return post_json(url, body(notice), timeout)


def channels_from_settings(settings: Settings) -> list[Channel]:
    channels = []
    if settings.slack_webhook_url is not None:
        channels.append(Channel("slack", partial(post_notice, settings.slack_webhook_url.get_secret_value(),
                                                 slack_body)))
    if settings.webhook_url is not None:
        channels.append(Channel("webhook", partial(post_notice, settings.webhook_url.get_secret_value(),
                                                   Notice.payload)))
    for url in settings.notify_url_list:
        channels.append(Channel(apprise_channel.label(url), partial(apprise_channel.send, url)))
    return channels
