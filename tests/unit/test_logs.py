"""Secrets never reach a log line, and masking them leaves ordinary words alone."""

from __future__ import annotations

import io
import json

from daemon.cli import _secret_values
from daemon.logs import REDACTED, RedactingStream, SecretRedactor
from daemon.notify.message import Notice
from daemon.settings import Settings


def scrubbed(redactor: SecretRedactor, **event: str) -> dict:
    return redactor(None, "info", event)


class TestSecretRedactor:
    def test_a_long_secret_is_masked_inside_any_value(self):
        """A webhook URL or a long password is blanked out wherever it appears."""
        redactor = SecretRedactor(["https://hooks.example/T000/B000/XYZ", "correct horse battery"])
        event = scrubbed(redactor, error="POST https://hooks.example/T000/B000/XYZ failed",
                         detail="password 'correct horse battery' rejected")
        assert event == {"error": f"POST {REDACTED} failed", "detail": f"password '{REDACTED}' rejected"}

    def test_a_short_secret_is_masked_only_as_a_whole_value(self):
        """POSTGRES_PASSWORD=postgres must not blank out the database, user and path names of that word."""
        redactor = SecretRedactor(["pgpass7", "pgbkp"])
        event = scrubbed(redactor, database="pgbkp", logger="daemon.backup.runner",
                         file="/var/lib/pgbkp/data", password="pgpass7")
        assert event == {"database": REDACTED, "logger": "daemon.backup.runner", "file": "/var/lib/pgbkp/data",
                         "password": REDACTED}


class TestSecretsOfTheSettings:
    def test_the_access_key_id_is_an_identifier(self):
        """AWS_ACCESS_KEY_ID=pgbackup (what the docs suggest) must not mask the word pgbackup in every log line;
        the secret key, the password and passwords inside URLs are masked."""
        settings = Settings(postgres_container="pg", postgres_password="db-password-1", s3_bucket="b",
                            aws_access_key_id="pgbackup", aws_secret_access_key="the-secret-key",
                            docker_host="tcp://admin:hunter22@docker.internal:2376", _env_file=None)
        assert sorted(_secret_values(settings)) == ["db-password-1", "hunter22", "the-secret-key"]


class TestRedactedOutput:
    def test_a_stream_masks_secrets_in_each_write(self):
        written = io.StringIO()
        stream = RedactingStream(written, SecretRedactor(["s3cret-password"]).scrub)
        print("pgbackup: database \"s3cret-password\" does not exist", file=stream)
        assert written.getvalue() == f"pgbackup: database \"{REDACTED}\" does not exist\n"

    def test_a_notice_masks_targets_and_reasons(self):
        notice = Notice(status="failure", kind="database", run_id="r",
                        failures=[{"target": "s3cret-password", "reason": "stderr: s3cret-password is wrong"}],
                        offsite_failures=[{"file": "a.dump", "reason": "key s3cret-password refused"}])
        text = json.dumps(notice.redacted(SecretRedactor(["s3cret-password"]).scrub).payload())
        assert "s3cret-password" not in text and text.count(REDACTED) == 7  # 3 fields, 4 in the text
