"""The stop of one-shot commands: SIGTERM/SIGINT set the cancel event and unwind the main thread once."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from daemon.interrupt import Interrupted, StopOnSignals
from daemon.sources.local import LocalProcessTransport
from daemon.sources.transport import stopped_on


@pytest.fixture
def restore_handlers():
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


class TestStopOnSignals:
    def test_first_signal_cancels_and_unwinds(self, restore_handlers):
        """The first SIGTERM sets the cancel event and raises Interrupted with exit status 143."""
        stop = StopOnSignals()
        stop.install()
        with pytest.raises(Interrupted) as raised:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert stop.cancel.is_set()
        assert raised.value.exit_code == 143
        assert stop.exit_code(1) == 143

    def test_a_second_signal_does_not_cut_the_cleanup_short(self, restore_handlers):
        """A signal while the first one's cleanup runs is only logged: nothing is raised."""
        stop = StopOnSignals()
        stop.install()
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert stop.exit_code(1) == 130

    def test_without_a_signal_the_status_stands(self):
        """No signal: the command's own exit status is kept."""
        assert StopOnSignals().exit_code(3) == 3


class TestStoppedOn:
    def test_cancel_stops_a_command_that_prints_nothing(self):
        """A cancel ends a local command blocked without output (the reader is stuck in a read)."""
        cancel = threading.Event()
        transport = LocalProcessTransport({"PATH": os.environ["PATH"]})
        threading.Timer(0.3, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(Exception) as raised:
            with transport.stream([sys.executable, "-c", "import time; time.sleep(30)"], cancel=cancel) as chunks:
                for _ in chunks:
                    pass
        assert time.monotonic() - started < 5
        assert "exit status -15" in str(raised.value)

    def test_no_stop_once_the_block_has_ended(self):
        """The watcher never stops anything after the block it watched has ended."""
        cancel, calls = threading.Event(), []
        with stopped_on(cancel, lambda: calls.append("stop")):
            pass
        cancel.set()
        time.sleep(0.5)
        assert calls == []
