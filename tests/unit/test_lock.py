import threading
import time

import pytest

from daemon.errors import Cancelled, LockBusy
from daemon.lock import backup_lock, read_holder


class TestBackupLock:
    def test_second_holder_fails_without_wait(self, tmp_path):
        """With wait=False a held lock raises LockBusy naming the holder."""
        with backup_lock(tmp_path, {"run_id": "first"}):
            assert read_holder(tmp_path) == {"run_id": "first"}
            with pytest.raises(LockBusy, match="first"):
                with backup_lock(tmp_path, {"run_id": "second"}, wait=False):
                    pass

    def test_waiter_announces_and_runs_after_release(self, tmp_path):
        """A waiting run says once whom it waits for, then runs when the lock is free."""
        order, announced = [], []
        release = threading.Event()

        def first():
            with backup_lock(tmp_path, {"run_id": "first"}):
                order.append("first-start")
                release.wait(5)
                order.append("first-end")

        thread = threading.Thread(target=first)
        thread.start()
        while not order:
            time.sleep(0.01)
        threading.Timer(0.8, release.set).start()
        with backup_lock(tmp_path, {"run_id": "second"}, on_wait=announced.append):
            order.append("second")
        thread.join()
        assert order == ["first-start", "first-end", "second"]
        assert announced == [{"run_id": "first"}]

    def test_cancel_stops_waiting(self, tmp_path):
        """A shutdown while waiting for the lock raises Cancelled."""
        cancel = threading.Event()
        with backup_lock(tmp_path, {"run_id": "first"}):
            threading.Timer(0.3, cancel.set).start()
            with pytest.raises(Cancelled):
                with backup_lock(tmp_path, {"run_id": "second"}, cancel=cancel):
                    pass
