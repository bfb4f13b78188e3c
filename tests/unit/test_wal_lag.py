"""Receive lag, slot retention and the recovery point (daemon/wal/lag.py): the pure decisions."""

from __future__ import annotations

import pytest

from daemon.settings import load_settings
from daemon.wal.lag import (
    MIB,
    SlotReading,
    parse_reading,
    recoverable_until,
    retained_limit,
    retention_problem,
    rpo_problem,
)
from daemon.wal.segments import parse_lsn
from tests.unit.test_settings import clean_environment, problems  # noqa: F401 - the autouse fixture

GIB = 1024 * MIB


def reading(current: str = "0/3000148", restart: str | None = "0/3000148", flush: str | None = None,
            wal_status: str = "reserved", keep_size_mb: int = -1) -> SlotReading:
    return SlotReading(parse_lsn(current), parse_lsn(restart) if restart else None,
                       parse_lsn(flush) if flush else None, wal_status, None, keep_size_mb)


class TestParseReading:
    def test_a_row_of_the_poll_query_becomes_positions_in_bytes(self):
        """LSNs such as 0/3000148 become byte positions; t/f become booleans; numbers become ints."""
        row = parse_reading("1/3000148|0/3000000|1/3000100|extended|1048576|1024|t|t\n")
        assert row.current_lsn == (1 << 32) + 0x3000148 == parse_lsn("1/3000148")
        assert row.restart_lsn == 0x3000000
        assert row.receiver_flush_lsn == (1 << 32) + 0x3000100
        assert (row.wal_status, row.safe_wal_size, row.max_slot_wal_keep_size_mb) == ("extended", 1048576, 1024)
        assert row.exists and row.active

    def test_empty_fields_are_unknown(self):
        """A slot that does not exist (or holds no WAL) and no connected receiver: positions are None."""
        row = parse_reading("0/3000148|||||-1|f|f")
        assert (row.restart_lsn, row.receiver_flush_lsn, row.safe_wal_size) == (None, None, None)
        assert not row.exists and not row.active
        assert row.lag_bytes is None and row.retained_bytes is None

    def test_a_row_of_the_wrong_shape_is_refused(self):
        """A row without the eight fields is an error, never a silent zero."""
        with pytest.raises(ValueError):
            parse_reading("0/3000148|0/3000000")


class TestLagAndRetention:
    def test_lag_is_measured_from_the_receivers_flush_position(self):
        """Connected: lag is the current position minus the reported flush position."""
        row = reading(current="0/3000148", restart="0/2000000", flush="0/3000100")
        assert row.lag_bytes == 0x48
        assert row.retained_bytes == 0x1000148

    def test_without_a_receiver_the_slots_position_is_what_was_flushed(self):
        """Disconnected: the slot moved only to what the receiver flushed, so lag is measured from it."""
        row = reading(current="0/5000000", restart="0/3000000", flush=None)
        assert row.lag_bytes == row.retained_bytes == 0x2000000

    def test_caught_up_is_lag_zero(self):
        """Flushed up to the current position: no lag."""
        assert reading(current="0/3000148", flush="0/3000148").lag_bytes == 0


class TestRecoverableUntil:
    def test_caught_up_reaches_the_time_of_the_reading(self):
        """Lag 0: every commit before the reading is received, however long ago WAL last arrived."""
        assert recoverable_until(0, checked_at=1000.0, last_caught_up=None, last_received=10.0) == 1000.0

    def test_behind_reaches_the_last_caught_up_reading_or_the_last_arrival(self):
        """Lag above 0: the newer of the last caught-up reading and the time WAL last arrived."""
        assert recoverable_until(4096, 1000.0, last_caught_up=900.0, last_received=950.0) == 950.0
        assert recoverable_until(4096, 1000.0, last_caught_up=980.0, last_received=950.0) == 980.0

    def test_never_later_than_the_reading(self):
        """A spool file written just after the reading does not move the point past it."""
        assert recoverable_until(4096, 1000.0, last_caught_up=None, last_received=1005.0) == 1000.0

    def test_unknown_when_nothing_was_ever_received(self):
        """No lag known and nothing received: no recovery point."""
        assert recoverable_until(None, 1000.0, None, None) is None


class TestRpoProblem:
    def test_within_the_limit_is_no_problem(self):
        """Recovery reaching back exactly WAL_MAX_LAG_SECONDS is still fine."""
        assert rpo_problem(700.0, now=1000.0, max_lag_seconds=300) is None

    def test_past_the_limit_names_the_setting_and_the_age(self):
        """Further back than WAL_MAX_LAG_SECONDS: the text says how far and names the setting."""
        text = rpo_problem(600.0, now=1000.0, max_lag_seconds=300)
        assert "400 s" in text and "WAL_MAX_LAG_SECONDS (300 s)" in text

    def test_no_recovery_point_is_left_to_the_streaming_problem(self):
        """Nothing received yet is wal_streaming_stopped's report, not this one."""
        assert rpo_problem(None, now=1000.0, max_lag_seconds=300) is None


class TestRetention:
    def test_the_setting_is_the_limit_while_the_server_keeps_unlimited_wal(self):
        """max_slot_wal_keep_size = -1: WAL_SLOT_RETAINED_MAX_BYTES as it is."""
        assert retained_limit(8 * GIB, -1) == 8 * GIB

    def test_a_smaller_server_limit_lowers_it_to_80_percent(self):
        """max_slot_wal_keep_size 1 GB: the alert comes at 80 % of it, before the server drops WAL."""
        assert retained_limit(8 * GIB, 1024) == int(0.8 * GIB)

    def test_a_larger_server_limit_leaves_the_setting(self):
        """max_slot_wal_keep_size 100 GB: the setting is lower and stays the limit."""
        assert retained_limit(8 * GIB, 100 * 1024) == 8 * GIB

    def test_over_the_limit_is_a_problem_naming_the_setting(self):
        """More retained than the limit: /healthz says how much and names WAL_SLOT_RETAINED_MAX_BYTES."""
        row = reading(current="0/5000000", restart="0/3000000")
        text = retention_problem(row, limit_bytes=0x1000000)
        assert str(0x2000000) in text and "WAL_SLOT_RETAINED_MAX_BYTES" in text

    def test_at_the_limit_is_no_problem(self):
        """Exactly the limit retained: fine."""
        assert retention_problem(reading(current="0/5000000", restart="0/3000000"), 0x2000000) is None

    @pytest.mark.parametrize("status", ["unreserved", "lost"])
    def test_a_slot_losing_wal_is_a_problem_whatever_it_retains(self, status):
        """wal_status unreserved or lost: the server removes WAL the archive lacks."""
        text = retention_problem(reading(wal_status=status, restart=None), limit_bytes=GIB)
        assert repr(status) in text

    @pytest.mark.parametrize("status", ["reserved", "extended"])
    def test_a_slot_within_its_reservation_is_fine(self, status):
        """wal_status reserved or extended with little retained: no problem."""
        assert retention_problem(reading(wal_status=status), limit_bytes=GIB) is None


class TestLimitSettings:
    def test_defaults(self, monkeypatch):
        """WAL_MAX_LAG_SECONDS is 300 and WAL_SLOT_RETAINED_MAX_BYTES 8 GiB unless set."""
        monkeypatch.setenv("POSTGRES_CONTAINER", "pg")
        settings = load_settings()
        assert (settings.wal_max_lag_seconds, settings.wal_slot_retained_max_bytes) == (300, 8 * GIB)

    @pytest.mark.parametrize(("variable", "value", "bound"), [
        ("WAL_MAX_LAG_SECONDS", "10", "greater than or equal to 30"),
        ("WAL_MAX_LAG_SECONDS", "99999999", "less than or equal to 86400"),
        ("WAL_SLOT_RETAINED_MAX_BYTES", "1024", f"greater than or equal to {16 * MIB}"),
        ("WAL_SLOT_RETAINED_MAX_BYTES", str(2**60), f"less than or equal to {2**50}"),
    ])
    def test_values_out_of_bounds_are_refused_naming_the_variable(self, monkeypatch, variable, value, bound):
        """A limit below a poll's reach (or a segment) or absurdly high is refused with the bound."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", **{variable: value})
        assert line.startswith(f"{variable}: ") and bound in line
