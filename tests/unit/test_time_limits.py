import threading
import time

from daemon.backup.time_limits import LockWaitTimedOut, RunDeadline, explain_lock_wait
from daemon.errors import CommandFailed
from daemon.sources.postgres import ConnectionOptions, PostgresServer, lock_wait_option

PG_DUMP_LOCK_TIMEOUT = (
    "pg_dump: error: query failed: ERROR:  canceling statement due to statement timeout\n"
    "pg_dump: detail: Query was: LOCK TABLE public.users IN ACCESS SHARE MODE"
)


class TestLockWaitOption:
    def test_dump_tools_get_the_timeout_in_milliseconds(self):
        """pg_dump and pg_dumpall are told to give up after the timeout, in milliseconds."""
        assert lock_wait_option("pg_dump", 600) == ["--lock-wait-timeout=600000"]
        assert lock_wait_option("pg_dumpall", 2) == ["--lock-wait-timeout=2000"]

    def test_other_tools_get_nothing(self):
        """psql and pg_restore have no such option."""
        assert lock_wait_option("psql", 600) == [] and lock_wait_option("pg_restore", 600) == []

    def test_the_server_puts_it_before_the_tools_own_arguments(self):
        """The option comes from the connection options, before the dump's own arguments."""
        server = PostgresServer(transport=None, options=ConnectionOptions(user="postgres", lock_wait_timeout_seconds=5))
        assert server.tool("pg_dump", "--format=custom") == [
            "pg_dump", "--no-password", "--username=postgres", "--lock-wait-timeout=5000", "--format=custom"]
        assert "--lock-wait-timeout=5000" not in server.tool("psql")


class TestExplainLockWait:
    def test_a_lock_timeout_names_the_table_and_the_setting(self):
        """pg_dump's statement timeout on LOCK TABLE becomes a message about the lock wait."""
        error = explain_lock_wait(CommandFailed(["pg_dump"], 1, PG_DUMP_LOCK_TIMEOUT), 2)
        assert isinstance(error, LockWaitTimedOut)
        assert "DUMP_LOCK_WAIT_TIMEOUT_SECONDS=2" in str(error) and "public.users" in str(error)

    def test_any_other_failure_is_left_as_it_is(self):
        """A failure without a timed-out lock is the tool's own error."""
        failure = CommandFailed(["pg_dump"], 1, "pg_dump: error: connection refused")
        assert explain_lock_wait(failure, 2) is failure


class TestRunDeadline:
    def test_the_deadline_sets_the_runs_stop_event(self):
        """Past its seconds the run's event is set and ``passed`` says why; the daemon's stop is untouched."""
        stop = threading.Event()
        with RunDeadline(stop, 1) as deadline:
            assert deadline.event.wait(5)
            assert deadline.passed and not stop.is_set()

    def test_a_shutdown_sets_it_without_the_deadline_passing(self):
        """The daemon's stop reaches the run's event at once, and is not taken for the deadline."""
        stop = threading.Event()
        with RunDeadline(stop, 3600) as deadline:
            stop.set()
            assert deadline.event.wait(5)
            assert not deadline.passed

    def test_a_run_that_ends_in_time_is_left_alone(self):
        """Leaving the block ends the watch: the event is never set afterwards."""
        with RunDeadline(threading.Event(), 1) as deadline:
            pass
        time.sleep(1.2)
        assert not deadline.event.is_set() and not deadline.passed
