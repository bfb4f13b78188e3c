"""The last step of `restore database`: the verified staging copy takes the target's place.

A failed rename cannot be provoked on a real server on demand (another session would have to
create the target between the drop and the rename), so the three SQL steps are replaced by
recording stand-ins here; the refused drop is exercised against a real server in
tests/integration/test_restore.py.
"""

from __future__ import annotations

from io import StringIO

import pytest

from daemon.errors import PgBackupError
from daemon.restore.base import RestoreFailed
from daemon.restore.database import swap_in
from daemon.restore.target import TargetServer


class RecordingTarget(TargetServer):
    def __init__(self, fail_on: str | None = None, interrupt: bool = False, staging_stays: str | None = None):
        super().__init__(postgres=None)
        self.steps: list[str] = []
        self.fail_on = fail_on
        self.interrupt = interrupt
        self.staging_stays = staging_stays

    def _step(self, step: str) -> None:
        self.steps.append(step)
        if self.fail_on and step.startswith(self.fail_on):
            if self.interrupt:
                raise KeyboardInterrupt
            raise PgBackupError(f"{step} failed")

    def drop_database(self, name: str) -> None:
        self._step(f"drop {name}")

    def drop_subscriptions(self, database: str) -> list[str]:
        return []  # the stand-in's databases have none

    def drop_staging(self, name: str) -> str | None:
        self.steps.append(f"drop quietly {name}")
        return self.staging_stays

    def execute(self, sql: str, database: str = "postgres") -> None:
        self._step(sql)


def test_swap_drops_the_target_then_renames():
    target = RecordingTarget()
    messages = StringIO()
    swap_in(target, messages, "pgbackup_restore_1", "authdb", target_exists=True)
    assert target.steps == ["drop authdb", 'ALTER DATABASE "pgbackup_restore_1" RENAME TO "authdb"']


def test_a_refused_drop_keeps_the_target_and_drops_the_copy():
    target = RecordingTarget(fail_on="drop authdb")
    messages = StringIO()
    with pytest.raises(RestoreFailed, match="could not drop 'authdb'.*'authdb' was left as it was"):
        swap_in(target, messages, "pgbackup_restore_1", "authdb", target_exists=True)
    assert target.steps == ["drop authdb", "drop quietly pgbackup_restore_1"]


def test_a_staging_copy_that_cannot_be_dropped_either_is_named():
    target = RecordingTarget(fail_on="drop authdb", staging_stays="it is in use")
    messages = StringIO()
    with pytest.raises(RestoreFailed) as raised:
        swap_in(target, messages, "pgbackup_restore_1", "authdb", target_exists=True)
    assert "'authdb' was left as it was" in str(raised.value)
    assert ("The staging database 'pgbackup_restore_1' could not be dropped (it is in use) and is still on the "
            "server") in str(raised.value)


def test_a_failed_rename_keeps_the_only_copy_and_names_it():
    target = RecordingTarget(fail_on="ALTER DATABASE")
    messages = StringIO()
    with pytest.raises(RestoreFailed) as raised:
        swap_in(target, messages, "pgbackup_restore_1", "authdb", target_exists=True)
    assert "The restored data is in database 'pgbackup_restore_1'" in str(raised.value)
    assert 'finish with: ALTER DATABASE "pgbackup_restore_1" RENAME TO "authdb"' in str(raised.value)
    assert not any(step.startswith("drop quietly") for step in target.steps)


@pytest.mark.parametrize("step", ["drop authdb", "ALTER DATABASE"])
def test_an_interruption_keeps_the_copy_and_says_where_it_is(step):
    target = RecordingTarget(fail_on=step, interrupt=True)
    messages = StringIO()
    with pytest.raises(KeyboardInterrupt):
        swap_in(target, messages, "pgbackup_restore_1", "authdb", target_exists=True)
    assert not any(s.startswith("drop quietly") for s in target.steps)
    assert "The restored data is in database 'pgbackup_restore_1'" in messages.getvalue()
