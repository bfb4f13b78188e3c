"""Destructive restore steps: confirmed by typing yes on a terminal, or by --yes."""

from __future__ import annotations

import io
import os
import threading
import time

import pytest

from daemon.monitoring.metrics import Metrics
from daemon.notify import Notifier
from daemon.restore.confirm import NotConfirmed, confirm
from daemon.settings import Settings
from daemon.verify.restore_test import install


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


STEPS = ["drop database 'authdb' on docker exec into container 'pg'"]


class TestConfirm:
    def test_terminal_yes(self):
        """On a terminal, typing 'yes' lets the steps go ahead after they were listed."""
        err = Terminal()
        confirm(STEPS, yes=False, stdin=Terminal("yes\n"), stderr=err)
        assert STEPS[0] in err.getvalue()

    @pytest.mark.parametrize("answer", ["", "y\n", "no\n", "YES please\n"])
    def test_terminal_anything_else(self, answer):
        """Any answer but 'yes' stops the restore."""
        with pytest.raises(NotConfirmed):
            confirm(STEPS, yes=False, stdin=Terminal(answer), stderr=Terminal())

    def test_no_terminal_needs_yes(self):
        """Without a terminal the error names what would be dropped and asks for --yes."""
        with pytest.raises(NotConfirmed, match="drop database 'authdb'.*--yes"):
            confirm(STEPS, yes=False, stdin=io.StringIO(), stderr=io.StringIO())

    def test_flag_confirms_and_says_so(self):
        """--yes goes ahead without reading stdin and still names the steps."""
        err = io.StringIO()
        confirm(STEPS, yes=True, stdin=io.StringIO(), stderr=err)
        assert "confirmed by --yes" in err.getvalue() and STEPS[0] in err.getvalue()

    def test_nothing_to_confirm(self):
        """No destructive step needs no confirmation."""
        confirm([], yes=False, stdin=io.StringIO(), stderr=io.StringIO())


class TestInstaller:
    def test_restore_test_job_uses_its_schedule(self, tmp_path):
        """The daemon gets one job on SCHEDULE_RESTORE_TEST."""
        settings = Settings(postgres_container="pg", backup_dir=tmp_path, schedule_restore_test="0 6 2 * *",
                            _env_file=None)

        metrics = Metrics()
        (job,) = install(settings, metrics, Notifier([], metrics, timeout=1, on_success=False), threading.Event())
        assert job.job_id == "restore_test" and str(job.trigger) == str(settings.trigger("0 6 2 * *")) and job.health is None
        # Its freshness limit for the alert rules: the longest month plus BACKUP_MAX_AGE_HOURS.
        assert metrics.registry.get_sample_value("pgbackup_restore_test_max_age_seconds") == 32 * 86400


class TestConfirmOnARealTerminal:
    """A pseudo-terminal (os.openpty) stands in for the operator's terminal."""

    def test_no_answer_ends_the_restore_after_the_timeout(self):
        main, side = os.openpty()
        with open(side, "r", closefd=False) as stdin, open(side, "w", closefd=False) as stderr:
            started = time.monotonic()
            with pytest.raises(NotConfirmed, match="no answer within 0.3 s; nothing was changed"):
                confirm(STEPS, yes=False, stdin=stdin, stderr=stderr, timeout=0.3)
            assert time.monotonic() - started < 5
        os.close(main)
        os.close(side)

    def test_an_answer_in_time_goes_ahead(self):
        main, side = os.openpty()
        os.write(main, b"yes\n")
        with open(side, "r", closefd=False) as stdin, open(side, "w", closefd=False) as stderr:
            confirm(STEPS, yes=False, stdin=stdin, stderr=stderr, timeout=5)
        os.close(main)
        os.close(side)
