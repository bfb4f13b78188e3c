"""Notifications: a Slack incoming webhook, a generic JSON webhook and any Apprise URLs
(NOTIFY_URLS: e-mail, ntfy, Telegram, ...; ``apprise_channel``), told about every failed run (and
every successful one with NOTIFY_ON_SUCCESS=true). ``http`` is the one POST the webhooks and pings use.

A notifier that fails is logged (without its URL) and counted in
pgbackup_notification_failures_total{channel}; it never breaks or holds up a backup for longer
than NOTIFY_TIMEOUT_SECONDS per channel. Dead-man pings (``ping``: PING_URL, healthchecks.io's
/start and /fail) are counted under channel "ping" and installed on the run extensions."""

from daemon.notify.channels import Channel, channels_from_settings
from daemon.notify.message import Notice, notice_for_run
from daemon.notify.send import Notifier

__all__ = ["Channel", "Notice", "Notifier", "channels_from_settings", "notice_for_run"]
