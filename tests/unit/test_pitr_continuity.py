"""The continuity check of verify and the restore test (daemon/verify/pitr_proof.py): pure, over
records and base backup manifests."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from daemon.errors import PgBackupError
from daemon.verify.pitr_proof import continuity_check, usable_bases
from daemon.wal.recovery import RecoveryRefused
from daemon.wal.segments import Segment
from tests.unit.test_wal import base_manifest, wal_record

NOW = datetime(2026, 12, 5, 12, tzinfo=timezone.utc)


def records(*numbers: int) -> list:
    return [wal_record(Segment(1, number).name) for number in numbers]


class TestContinuity:
    def test_continuous_wal_from_the_oldest_base_is_said_with_its_span(self):
        """Segments 2..5 after a base in segment 2: the check names the oldest base and the newest segment."""
        text = continuity_check(records(2, 3, 4, 5), [base_manifest()])
        assert "base_20261205_000000.tar.gz" in text and Segment(1, 5).name in text and "no hole" in text

    def test_a_hole_after_the_oldest_base_is_refused_naming_the_missing_segment(self):
        with pytest.raises(RecoveryRefused, match=Segment(1, 4).name):
            continuity_check(records(2, 3, 5, 6), [base_manifest()])

    def test_without_a_base_backup_there_is_nothing_to_recover_from(self):
        with pytest.raises(PgBackupError, match="no base backup"):
            continuity_check(records(2, 3), [])


class TestUsableBases:
    def test_oldest_first_and_future_dated_ones_left_out(self):
        old = replace(base_manifest(), file="old", started_at=NOW - timedelta(days=2))
        new = replace(base_manifest(), file="new", started_at=NOW - timedelta(hours=1))
        future = replace(base_manifest(), file="future", started_at=NOW + timedelta(days=300))
        assert [m.file for m in usable_bases([new, future, old], NOW)] == ["old", "new"]
