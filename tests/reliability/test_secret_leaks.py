"""Item 6: a failure reason quoting a tool's stderr reached notifications and the CLI's stderr
unredacted (the log lines were already masked).

The secret gets into stderr the way it would in the field: it is part of what a tool echoes
back. Here the database password is also (by mistake) the name of the database asked for, so
pg_dump's "database ... does not exist" quotes it. Real PostgreSQL container, the real
`pgbackup` command, a real HTTP receiver for WEBHOOK_URL.
"""

from __future__ import annotations

import json

from tests.support.pgbackup_cli import exec_env, pgbackup
from tests.support.webhook import RecordingServer

SECRET = "Hunter2-correct-horse-battery"


class TestReasonsAreRedacted:
    def test_notification_and_cli_stderr_mask_the_secret(self, postgres_factory, tmp_path):
        """The failed backup's notification and the command's stderr say what failed, with the secret masked."""
        server = postgres_factory(databases=("authdb",), password=SECRET)
        webhook = RecordingServer()
        try:
            env = exec_env(server, tmp_path / "backups", POSTGRES_PASSWORD=SECRET, WEBHOOK_URL=webhook.url("/h"))
            result = pgbackup("backup", "database", SECRET, env=env)
        finally:
            webhook.close()

        assert result.returncode != 0
        (notice,) = webhook.requests
        body = json.dumps(notice.body)
        assert notice.body["status"] == "failure" and "***" in body
        assert SECRET not in body
        assert SECRET not in result.stderr and SECRET not in result.stdout
        assert "***" in result.stderr
