"""NOTIFY_URLS through Apprise against real receivers in the test process: an SMTP server for
mailto://, an HTTP server for json:// and ntfy://; receivers that are down or never answer; and
no URL, password or token in any log line, Apprise's own included."""

from __future__ import annotations

import io
import logging
import socket
import time

import pytest
import structlog

from daemon.logs import configure_logging
from daemon.monitoring.metrics import Metrics
from daemon.notify import Notifier, channels_from_settings, notice_for_run
from daemon.settings import Settings
from tests.integration.test_notify import failed_run, failures_counted, successful_run
from tests.support.docker_env import free_port
from tests.support.pgbackup_cli import exec_env, log_events, pgbackup
from tests.support.smtp import RecordingSmtpServer
from tests.support.webhook import RecordingServer

SMTP_USER, SMTP_PASSWORD = "pgbackup-mailer", "smtp-password-0815"
TOKEN = "json-token-5c1d9e"  # the secret part of the json:// URL's path
TOPIC = "ntfy-topic-77a3b0"  # an ntfy topic is its secret: anyone who knows it can read it
SECRETS = (SMTP_USER, SMTP_PASSWORD, TOKEN, TOPIC)


def mailto_url(port: int, password: str = SMTP_PASSWORD) -> str:
    return (f"mailto://{SMTP_USER}:{password}@127.0.0.1:{port}"
            "?from=pgbackup@example.com&to=ops@example.com&mode=insecure")


def json_url(receiver: RecordingServer) -> str:
    return f"json://127.0.0.1:{receiver.server.server_address[1]}/hooks/{TOKEN}"


def ntfy_url(receiver: RecordingServer) -> str:
    return f"ntfy://127.0.0.1:{receiver.server.server_address[1]}/{TOPIC}"


def notifier_for(urls: list[str], metrics: Metrics, timeout: float = 3, on_success: bool = False) -> Notifier:
    settings = Settings(postgres_container="pgbackup-test-unused", notify_urls=" ".join(urls),
                        notify_timeout_seconds=timeout, notify_on_success=on_success)
    return Notifier(channels_from_settings(settings), metrics, settings.notify_timeout_seconds,
                    settings.notify_on_success)


@pytest.fixture
def smtp_server():
    server = RecordingSmtpServer(SMTP_USER, SMTP_PASSWORD)
    yield server
    server.close()


@pytest.fixture
def log_output():
    """The daemon's real logging set-up at DEBUG, written to a buffer; root logging restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    output = io.StringIO()
    configure_logging("DEBUG", stream=output)
    yield output
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def silent_port() -> tuple[socket.socket, int]:
    """A port that accepts connections and never says a word (an SMTP banner that never comes)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener, listener.getsockname()[1]


class TestDelivery:
    def test_a_failure_reaches_mail_json_and_ntfy(self, smtp_server, recording_servers):
        """One failed run's notice arrives as a mail (after AUTH), a json:// POST and an ntfy message, with title and reason."""
        webhook, ntfy = recording_servers(), recording_servers()
        notice = notice_for_run(failed_run())
        delivered = notifier_for([mailto_url(smtp_server.port), json_url(webhook), ntfy_url(ntfy)], Metrics()).send(
            notice)
        assert delivered == {"mailto": True, "json": True, "ntfy": True}
        assert smtp_server.logins == [SMTP_USER]
        (mail,) = smtp_server.messages
        assert mail["Subject"] == "pgbackup: full backup FAILED (all)" and mail["To"] == "ops@example.com"
        assert "connection refused" in mail.get_body(("plain",)).get_content()
        (post,) = webhook.requests
        assert post.path == f"/hooks/{TOKEN}"
        assert post.body["title"] == notice.title() and post.body["type"] == "failure"
        assert post.body["message"] == "\n".join(notice.lines())
        (message,) = ntfy.requests
        assert message.body["topic"] == TOPIC and message.body["title"] == notice.title()
        assert "connection refused" in message.body["message"]

    def test_a_success_is_sent_only_with_notify_on_success(self, smtp_server):
        """A good run sends no mail by default, and with NOTIFY_ON_SUCCESS the size and location."""
        assert notifier_for([mailto_url(smtp_server.port)], Metrics()).send(notice_for_run(successful_run())) == {}
        assert smtp_server.messages == []
        notifier = notifier_for([mailto_url(smtp_server.port)], Metrics(), on_success=True)
        assert notifier.send(notice_for_run(successful_run())) == {"mailto": True}
        (mail,) = smtp_server.messages
        assert mail["Subject"] == "pgbackup: database backup succeeded"
        body = mail.get_body(("plain",)).get_content()
        assert "5.0 MiB" in body and "local+s3" in body

    def test_two_urls_of_one_service_are_two_deliveries_under_one_label(self, recording_servers):
        """Two json:// URLs both get the notice; one that fails makes the label's result False and counts once."""
        working, broken = recording_servers(), recording_servers(status=500)
        metrics = Metrics()
        delivered = notifier_for([json_url(working), json_url(broken)], metrics).send(notice_for_run(failed_run()))
        assert delivered == {"json": False}
        assert len(working.requests) == 1 and len(broken.requests) == 1
        assert failures_counted(metrics, "json") == 1


class TestFailingReceivers:
    def test_receivers_that_are_down_are_counted_by_scheme_and_never_logged(self, recording_servers, log_output):
        """A closed SMTP port and a closed HTTP port count one failure each under mailto and json;
        the log names the channels and no URL part, and carries no line of Apprise's."""
        gone = recording_servers()
        urls = [mailto_url(free_port()), json_url(gone)]
        gone.close()
        metrics = Metrics()
        notifier = notifier_for(urls, metrics)
        assert failures_counted(metrics, "mailto") == 0 and failures_counted(metrics, "json") == 0
        assert notifier.send(notice_for_run(failed_run())) == {"mailto": False, "json": False}
        assert failures_counted(metrics, "mailto") == 1 and failures_counted(metrics, "json") == 1
        events = [event for event in log_events(log_output.getvalue()) if event["event"] == "notification_failed"]
        assert [event["channel"] for event in events] == ["mailto", "json"]
        assert all("did not accept" in event["error"] for event in events)
        assert not any(secret in log_output.getvalue() for secret in SECRETS)
        assert '"logger": "apprise"' not in log_output.getvalue()

    def test_a_refused_login_is_a_failure_within_the_deadline(self, smtp_server):
        """A wrong SMTP password (the server delays its refusal) fails the mailto channel after the deadline, not later."""
        metrics = Metrics()
        started = time.monotonic()
        delivered = notifier_for([mailto_url(smtp_server.port, password="wrong-password-1")], metrics, timeout=1).send(
            notice_for_run(failed_run()))
        assert delivered == {"mailto": False}
        assert time.monotonic() - started < 1 + 1.5
        assert failures_counted(metrics, "mailto") == 1 and smtp_server.messages == []

    def test_receivers_that_never_answer_do_not_hold_the_backup(self, recording_servers):
        """An SMTP server that never greets and an HTTP server holding the request are given up at the deadline and counted."""
        hanging = recording_servers(hang=True)
        listener, port = silent_port()
        metrics = Metrics()
        started = time.monotonic()
        try:
            delivered = notifier_for([mailto_url(port), json_url(hanging)], metrics, timeout=1).send(
                notice_for_run(failed_run()))
        finally:
            listener.close()
        assert delivered == {"mailto": False, "json": False}
        assert time.monotonic() - started < 2 * (1 + 1.5)  # each channel its own deadline, one after the other
        assert hanging.arrived.is_set() and not hanging.release.is_set()  # still holding the request
        assert failures_counted(metrics, "mailto") == 1 and failures_counted(metrics, "json") == 1


class TestFromABackupRun:
    def test_a_failed_backup_mails_and_posts_without_logging_a_url(self, small_source, smtp_server,
                                                                    recording_servers, tmp_path):
        """`pgbackup backup database no_such_db` sends its failure to NOTIFY_URLS_FILE's URLs (one a
        line); stdout, stderr and the run log name the channels and none of the URLs' secrets."""
        webhook = recording_servers()
        urls_file = tmp_path / "notify_urls"
        urls_file.write_text(f"{mailto_url(smtp_server.port)}\n{json_url(webhook)}\n")
        backups = tmp_path / "backups"
        env = exec_env(small_source, backups, NOTIFY_URLS_FILE=str(urls_file), LOG_LEVEL="DEBUG")
        result = pgbackup("backup", "database", "no_such_db", env=env)
        assert result.returncode == 1
        (mail,) = smtp_server.messages
        assert mail["Subject"] == "pgbackup: database backup FAILED (no_such_db)"
        assert "pg_dump failed" in mail.get_body(("plain",)).get_content()
        (post,) = webhook.requests
        assert post.body["title"] == mail["Subject"]
        sent = [event["channel"] for event in log_events(result.stderr) if event["event"] == "notification_sent"]
        assert sent == ["mailto", "json"]
        run_logs = "".join(path.read_text() for path in backups.glob("backup_*.log"))
        assert run_logs
        for secret in SECRETS:
            assert secret not in result.stdout + result.stderr + run_logs
