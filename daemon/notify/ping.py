"""Dead-man pings, healthchecks.io conventions: ``<url>/start`` when a run starts, ``<url>``
when it succeeded, ``<url>/fail`` when it failed, each a POST whose body says what happened.

Scheduled runs and backups taken by hand (``pgbackup backup ...``) ping alike: both are real
backups of the kind, and a by-hand failure is as real as a scheduled one. PING_URL_<SCHEDULE>
(FULL, DATABASES, TABLES, VOLUME) replaces PING_URL for that kind's runs; a pre-migration backup
pings the full one's. Success means the run made every backup it should (RunOutcome.ok); an
offsite copy that failed is reported by the notification channels and the S3 metrics.

The URL lets anyone ping the check: it is never logged, and failures are counted in
pgbackup_notification_failures_total{channel="ping"} with the kind in the log line. A ping that
fails never fails or holds up a backup for more than NOTIFY_TIMEOUT_SECONDS (+1 s).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from urllib.parse import urlsplit, urlunsplit

from daemon.backup.extensions import RunExtensions
from daemon.backup.outcome import RunOutcome
from daemon.logs import get_logger, redactor
from daemon.monitoring.metrics import Metrics
from daemon.notify.http import post
from daemon.notify.message import notice_for_run
from daemon.notify.send import deliver
from daemon.settings import Settings

log = get_logger(__name__)

CHANNEL = "ping"
START, SUCCESS, FAIL = "start", "success", "fail"
BODY_LIMIT = 4096  # bytes; healthchecks.io keeps up to 100 kB, the reasons need far less
# The setting that replaces PING_URL for a kind's runs.
KIND_SETTING = {
    "full": "ping_url_full",
    "pre_migration": "ping_url_full",
    "database": "ping_url_databases",
    "table": "ping_url_tables",
    "volume": "ping_url_volume",
}


def ping_urls(settings: Settings) -> dict[str, str]:
    """kind -> the URL its runs ping; kinds without one are left out."""
    urls = {}
    for kind, name in KIND_SETTING.items():
        secret = getattr(settings, name) or settings.ping_url
        if secret is not None:
            urls[kind] = secret.get_secret_value()
    return urls


def event_url(base: str, event: str) -> str:
    """``base`` for a success, ``base/start`` or ``base/fail``; a query string stays at the end."""
    if event == SUCCESS:
        return base
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{event}"))


def ping_body(text: str) -> bytes:
    """``text`` with the known secrets masked, cut to BODY_LIMIT bytes."""
    return redactor.scrub(text).encode("utf-8")[:BODY_LIMIT].decode("utf-8", errors="ignore").encode("utf-8")


def finished_event(outcome: RunOutcome) -> str:
    return SUCCESS if outcome.ok else FAIL


class Pinger:
    def __init__(self, urls: dict[str, str], metrics: Metrics, timeout: float):
        self.urls = urls
        self.metrics = metrics
        self.timeout = timeout
        metrics.notification_failures.labels(CHANNEL)  # at 0, so that increase() sees the first failure

    def run_started(self, outcome: RunOutcome) -> AbstractContextManager[object]:
        """A run wrapper: ``/start`` once the run holds the lock."""
        self.ping(outcome.kind, START, f"pgbackup: {outcome.kind} backup started (run {outcome.run_id})")
        return nullcontext()

    def run_finished(self, outcome: RunOutcome) -> None:
        """An after-run hook: success or ``/fail`` with the reasons."""
        self.ping(outcome.kind, finished_event(outcome), notice_for_run(outcome).text())

    def ping(self, kind: str, event: str, text: str) -> bool:
        base = self.urls.get(kind)
        if base is None:
            return False
        url, body = event_url(base, event), ping_body(text)
        error = deliver(f"ping-{kind}", self.timeout,
                        lambda: post(url, body, "text/plain; charset=utf-8", self.timeout))
        if error is None:
            log.info("ping_sent", channel=CHANNEL, ping=event)
            return True
        log.warning("ping_failed", channel=CHANNEL, ping=event, error=error)
        self.metrics.notification_failures.labels(CHANNEL).inc()
        return False


def install(settings: Settings, extensions: RunExtensions, metrics: Metrics) -> Pinger | None:
    """Register the pings when any PING_URL* is set."""
    urls = ping_urls(settings)
    if not urls:
        return None
    pinger = Pinger(urls, metrics, settings.notify_timeout_seconds)
    extensions.wrap_runs(pinger.run_started)
    extensions.after_runs(pinger.run_finished)
    return pinger
