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
from daemon.restore.engine import Restorer, RestoreFailed


class RecordingRestorer(Restorer):
    def __init__(self, fail_on: str | None = None, interrupt: bool = False):
        super().__init__(server=None, progress_stream=StringIO())
        self.steps: list[str] = []
        self.fail_on = fail_on
        self.interrupt = interrupt

    def _step(self, step: str) -> None:
        self.steps.append(step)
        if self.fail_on and step.startswith(self.fail_on):
            if self.interrupt:
                raise KeyboardInterrupt
            raise PgBackupError(f"{step} failed")

    def _drop_database(self, name: str) -> None:
        self._step(f"drop {name}")

    def _drop_quietly(self, name: str) -> None:
        self.steps.append(f"drop quietly {name}")

    def _execute(self, sql: str, database: str = "postgres") -> None:
        self._step(sql)


def test_swap_drops_the_target_then_renames():
    restorer = RecordingRestorer()
    restorer._swap_in("pgbackup_restore_1", "authdb", target_exists=True)
    assert restorer.steps == ["drop authdb", 'ALTER DATABASE "pgbackup_restore_1" RENAME TO "authdb"']


def test_a_refused_drop_keeps_the_target_and_drops_the_copy():
    restorer = RecordingRestorer(fail_on="drop authdb")
    with pytest.raises(RestoreFailed, match="could not drop 'authdb'.*'authdb' was left as it was"):
        restorer._swap_in("pgbackup_restore_1", "authdb", target_exists=True)
    assert restorer.steps == ["drop authdb", "drop quietly pgbackup_restore_1"]


def test_a_failed_rename_keeps_the_only_copy_and_names_it():
    restorer = RecordingRestorer(fail_on="ALTER DATABASE")
    with pytest.raises(RestoreFailed) as raised:
        restorer._swap_in("pgbackup_restore_1", "authdb", target_exists=True)
    assert "The restored data is in database 'pgbackup_restore_1'" in str(raised.value)
    assert 'finish with: ALTER DATABASE "pgbackup_restore_1" RENAME TO "authdb"' in str(raised.value)
    assert not any(step.startswith("drop quietly") for step in restorer.steps)


@pytest.mark.parametrize("step", ["drop authdb", "ALTER DATABASE"])
def test_an_interruption_keeps_the_copy_and_says_where_it_is(step):
    restorer = RecordingRestorer(fail_on=step, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        restorer._swap_in("pgbackup_restore_1", "authdb", target_exists=True)
    assert not any(s.startswith("drop quietly") for s in restorer.steps)
    assert "The restored data is in database 'pgbackup_restore_1'" in restorer.progress_stream.getvalue()
