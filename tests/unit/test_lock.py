import threading
import time

import pytest

from daemon.errors import Cancelled, LockBusy
from daemon.lock import backup_lock, read_holder
from tests.support.mounts import read_only_mount


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


@pytest.fixture
def read_only_view(tmp_path):
    """(rw, ro): one directory, also seen through a read-only bind mount."""
    rw = tmp_path / "rw"
    rw.mkdir()
    with read_only_mount(rw, tmp_path / "ro") as ro:
        yield rw, ro


class TestReadOnlyDirectory:
    def test_refused_unless_the_command_only_reads(self, read_only_view):
        """A backup run cannot lock a read-only directory: the error comes from the OS, nothing is guessed."""
        _, ro = read_only_view
        with pytest.raises(OSError, match="Read-only file system"):
            with backup_lock(ro, {"run_id": "backup"}):
                pass

    def test_a_reader_still_meets_the_writers_lock(self, read_only_view):
        """Through the read-only view the existing lock file is locked all the same: a run holding it on
        the writable side keeps the reader out, and the holder's note is left as it was."""
        rw, ro = read_only_view
        with backup_lock(rw, {"run_id": "writer"}):
            with pytest.raises(LockBusy, match="writer"):
                with backup_lock(ro, {"run_id": "reader"}, wait=False, read_only_ok=True):
                    pass
        with backup_lock(ro, {"run_id": "reader"}, wait=False, read_only_ok=True):
            assert read_holder(rw) == {}
            with pytest.raises(LockBusy):
                with backup_lock(rw, {"run_id": "writer"}, wait=False):
                    pass

    def test_no_lock_file_means_no_writer(self, read_only_view):
        """A read-only directory without a lock file is read without locking; nothing is created."""
        _, ro = read_only_view
        with backup_lock(ro, {"run_id": "reader"}, wait=False, read_only_ok=True):
            assert list(ro.iterdir()) == []
