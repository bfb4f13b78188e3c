"""Notifications against real HTTP servers on 127.0.0.1 that record what they receive."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from daemon.backup.runner import RunOutcome, TargetFailure
from daemon.manifest import Manifest
from daemon.monitoring.metrics import Metrics
from daemon.notify import Notifier, channels_from_settings, notice_for_run
from daemon.settings import Settings
from tests.support.webhook import RecordingServer

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=ZoneInfo("UTC"))


def settings_for(**values) -> Settings:
    return Settings(postgres_container="pgbackup-test-unused", **values)


def successful_run() -> RunOutcome:
    manifest = Manifest(kind="database", target="authdb", file="authdb_20261126_030000.dump", size_bytes=5 * 1024**2,
                        sha256="ab", started_at=T0, finished_at=T0 + timedelta(seconds=42), server_version="15.8",
                        format="custom", compression="pg_dump",
                        offsite={"status": "complete", "key": "authdb_20261126_030000.dump"})
    return RunOutcome("run1", "database", T0, T0 + timedelta(seconds=43), artifacts=[manifest])


def failed_run() -> RunOutcome:
    failure = TargetFailure("full", "all", "pg_dumpall failed (exit status 1); stderr: connection refused")
    return RunOutcome("run2", "full", T0, T0 + timedelta(seconds=1), failures=[failure])


def notifier_for(metrics: Metrics, slack: RecordingServer | None = None, webhook: RecordingServer | None = None,
                 on_success: bool = False, timeout: float = 2) -> Notifier:
    values = {"notify_on_success": on_success, "notify_timeout_seconds": timeout}
    if slack:
        values["slack_webhook_url"] = slack.url()
    if webhook:
        values["webhook_url"] = webhook.url("/pgbackup")
    settings = settings_for(**values)
    return Notifier(channels_from_settings(settings), metrics, settings.notify_timeout_seconds,
                    settings.notify_on_success)


def failures_counted(metrics: Metrics, channel: str) -> float:
    return metrics.registry.get_sample_value("pgbackup_notification_failures_total", {"channel": channel}) or 0


class TestDelivery:
    def test_failure_goes_to_slack_and_webhook(self, recording_servers):
        """A failed run is posted to both channels with kind, target and the reason."""
        slack, webhook = recording_servers(), recording_servers()
        delivered = notifier_for(Metrics(), slack, webhook).send(notice_for_run(failed_run()))
        assert delivered == {"slack": True, "webhook": True}
        (slack_request,) = slack.requests
        assert slack_request.headers["Content-Type"] == "application/json"
        text = slack_request.body["text"]
        assert ":x:" in text and "full" in text and "all" in text and "connection refused" in text
        (hook_request,) = webhook.requests
        assert hook_request.path == "/pgbackup"
        body = hook_request.body
        assert body["status"] == "failure" and body["kind"] == "full"
        assert body["failures"] == [{"target": "all", "reason": failed_run().failures[0].error}]

    def test_success_is_sent_only_with_notify_on_success(self, recording_servers):
        """A successful run is silent by default and posted with NOTIFY_ON_SUCCESS=true, with size, duration and location."""
        quiet, loud = recording_servers(), recording_servers()
        assert notifier_for(Metrics(), webhook=quiet).send(notice_for_run(successful_run())) == {}
        assert quiet.requests == []
        assert notifier_for(Metrics(), webhook=loud, on_success=True).send(notice_for_run(successful_run())) == {
            "webhook": True}
        (backup,) = loud.requests[0].body["backups"]
        assert backup == {"target": "authdb", "file": "authdb_20261126_030000.dump", "size_bytes": 5 * 1024**2,
                          "duration_seconds": 42.0, "location": "local+s3"}
        assert "5.0 MiB" in loud.requests[0].body["text"] and "42.0 s" in loud.requests[0].body["text"]

    def test_offsite_failure_is_notified_even_when_the_backup_succeeded(self, recording_servers):
        """A good local backup whose S3 copy failed is reported as a failure."""
        webhook = recording_servers()
        notice = notice_for_run(successful_run(), [{"file": "authdb_20261126_030000.dump", "reason": "AccessDenied"}])
        notifier_for(Metrics(), webhook=webhook).send(notice)
        body = webhook.requests[0].body
        assert body["status"] == "failure" and body["offsite_failures"][0]["reason"] == "AccessDenied"


class TestFailingNotifier:
    def test_server_error_is_logged_and_counted_without_the_url(self, recording_servers):
        """A 500 answer is counted per channel and logged without the webhook URL, and the other channel still gets the notice."""
        broken, working = recording_servers(status=500), recording_servers()
        metrics = Metrics()
        with structlog.testing.capture_logs() as logs:
            delivered = notifier_for(metrics, slack=broken, webhook=working).send(notice_for_run(failed_run()))
        assert delivered == {"slack": False, "webhook": True}
        assert failures_counted(metrics, "slack") == 1 and failures_counted(metrics, "webhook") == 0
        failure = next(event for event in logs if event["event"] == "notification_failed")
        assert failure["channel"] == "slack" and "500" in failure["error"]
        assert all("secret-token-123" not in str(event) and "127.0.0.1" not in str(event) for event in logs)

    def test_hanging_server_does_not_hold_the_backup(self, recording_servers):
        """A server that never answers is given up after the timeout while it still holds the request, and counted."""
        hanging = recording_servers(hang=True)
        metrics = Metrics()
        delivered = notifier_for(metrics, webhook=hanging, timeout=1).send(notice_for_run(failed_run()))
        assert delivered == {"webhook": False}
        assert hanging.arrived.is_set() and not hanging.release.is_set()  # still holding the request
        assert failures_counted(metrics, "webhook") == 1

    def test_unreachable_server_is_counted(self, recording_servers):
        """A closed port is a delivery failure, counted, and never an exception."""
        gone = recording_servers()
        url_server = gone
        gone.close()
        metrics = Metrics()
        assert notifier_for(metrics, webhook=url_server).send(notice_for_run(failed_run())) == {"webhook": False}
        assert failures_counted(metrics, "webhook") == 1
