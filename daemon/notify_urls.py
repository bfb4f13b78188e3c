"""NOTIFY_URLS: Apprise URLs (mailto://, ntfy://, tgram://, json:// and 100 more services), the
vocabulary settings.py validates and notify/apprise_channel.py sends to.

URLs are separated by whitespace (spaces, tabs, new lines: one a line in NOTIFY_URLS_FILE), never
by commas: a comma is legal inside a URL (``mailto://...?to=a@example.com,b@example.com``),
whitespace is not.

Each URL is a secret (tokens, passwords): the metric label and every log line name only its
scheme. Apprise's own log lines can name hosts, users and tokens, so its logger is silenced.

Apprise is imported only when a URL is checked or used: loading it costs every command about
90 ms (and a deprecation warning from Python's imghdr), needed only with NOTIFY_URLS set.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import apprise

# Apprise logs through this logger (apprise/logger.py).
APPRISE_LOGGER = "apprise"
SCHEME_PATTERN = re.compile(r"[a-z][a-z0-9+.-]{0,31}")


def split_urls(text: str) -> list[str]:
    """The URLs of NOTIFY_URLS, in order; separated by whitespace only."""
    return text.split()


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case (the metric label), or "" when it has none a label may show."""
    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()
    return scheme if separator and SCHEME_PATTERN.fullmatch(scheme) else ""


def quiet_apprise_log() -> None:
    """Keep Apprise's log lines (which can carry parts of a URL) out of every log output."""
    logger = logging.getLogger(APPRISE_LOGGER)
    logger.propagate = False
    logger.setLevel(logging.CRITICAL + 1)


def notify_service(url: str) -> apprise.NotifyBase | None:
    """Apprise's sender for ``url``, or None when the scheme is unknown or the URL incomplete."""
    import apprise

    quiet_apprise_log()
    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def ordinal(position: int) -> str:
    """1 -> 1st, 2 -> 2nd, 11 -> 11th, 23 -> 23rd."""
    suffix = "th" if 10 <= position % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(position % 10, "th")
    return f"{position}{suffix}"


def url_problems(urls: list[str]) -> list[str]:
    """One line per URL Apprise cannot send to, naming its position and scheme, never the URL."""
    problems = []
    for position, url in enumerate(urls, start=1):
        if notify_service(url) is None:
            scheme = scheme_of(url)
            what = f"a {scheme}:// URL Apprise cannot use (an unknown service, or a part missing)" if scheme else (
                "not a URL (SCHEME://...)")
            problems.append(f"the {ordinal(position)} URL is {what}")
    return problems
