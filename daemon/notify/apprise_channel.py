"""NOTIFY_URLS: the notice sent through Apprise to one URL (e-mail, ntfy, Telegram, Matrix, ...).

Each URL is its own channel, named after its scheme (``mailto``, ``ntfy``): the label of
pgbackup_notification_failures_total and of every log line, never the URL. Apprise's own timeouts
(connect and read) are held to NOTIFY_TIMEOUT_SECONDS; the Notifier's deadline bounds the whole
delivery, retries and slow services included. Apprise's reasons for a failure stay unlogged: its
log lines can show hosts, users and tokens (notify_urls.quiet_apprise_log).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.notify.http import DeliveryFailed
from daemon.notify.message import Notice
from daemon.notify_urls import notify_service, scheme_of

if TYPE_CHECKING:
    import apprise

FALLBACK_LABEL = "apprise"  # for a URL without a scheme a label may show; settings never let one in


def label(url: str) -> str:
    """The channel's name: the URL's scheme."""
    return scheme_of(url) or FALLBACK_LABEL


def notify_type(notice: Notice) -> apprise.NotifyType:
    """Apprise's colour and icon for the notice."""
    import apprise

    return apprise.NotifyType.FAILURE if notice.failed else apprise.NotifyType.SUCCESS


def send(url: str, notice: Notice, timeout: float) -> None:
    """The notice's title and lines as plain text to ``url``; raises DeliveryFailed."""
    import apprise

    service = notify_service(url)
    if service is None:
        raise DeliveryFailed("Apprise cannot use this URL")
    service.socket_connect_timeout = min(service.socket_connect_timeout or timeout, timeout)
    service.socket_read_timeout = min(service.socket_read_timeout or timeout, timeout)
    delivered = service.notify(body="\n".join(notice.lines()) or notice.title(), title=notice.title(),
                               notify_type=notify_type(notice), body_format=apprise.NotifyFormat.TEXT)
    if not delivered:
        raise DeliveryFailed(f"the {label(url)} service did not accept the notice "
                             "(Apprise's reason is not logged: it can show parts of the URL)")
