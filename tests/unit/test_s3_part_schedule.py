"""The S3 part schedule and the uploader's memory bound: pure functions, no S3."""

from __future__ import annotations

import pytest

from daemon.storage import s3_upload
from daemon.storage.s3 import OffsiteError
from daemon.storage.s3_upload import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    PART_SIZE,
    held_bytes_bound,
    streamed_parts_limit,
    tail_part_size,
)

GB = 1000**3
TB = 1000**4


def parts_for(size: int, part_size: int = PART_SIZE, max_parts: int = MAX_PARTS) -> list[int]:
    """The part sizes an upload of ``size`` bytes uses: constant parts from memory, then the tail."""
    streamed = min(size // part_size, streamed_parts_limit(max_parts))
    parts = [part_size] * streamed
    rest = size - streamed * part_size
    if streamed < streamed_parts_limit(max_parts):
        return parts + ([rest] if rest else [])
    tail = tail_part_size(rest, max_parts - streamed, part_size)
    return parts + [min(tail, rest - offset) for offset in range(0, rest, tail)]


class TestPartSchedule:
    @pytest.mark.parametrize("size", [1, 8 * GB, 100 * GB, 1 * TB, 5 * TB])
    def test_every_size_fits_in_s3s_limits(self, size):
        """Up to S3's 5 TB object: at most 10,000 parts, each 5 MiB..5 GiB but the last, covering the size."""
        parts = parts_for(size)
        assert sum(parts) == size and len(parts) <= MAX_PARTS
        assert all(MIN_PART_SIZE <= part <= MAX_PART_SIZE for part in parts[:-1])

    @pytest.mark.parametrize("size", [100 * GB, 1 * TB, 5 * TB])
    def test_parts_held_in_memory_keep_one_size(self, size):
        """Every part cut from memory has PART_SIZE bytes at any dump size; only the tail, read from the
        local file, has larger parts."""
        streamed = parts_for(size)[:streamed_parts_limit(MAX_PARTS)]
        assert set(streamed) == {PART_SIZE}

    def test_tail_part_size_rounds_up_to_whole_mib(self):
        """The tail's parts are never smaller than the configured part size, and a whole number of MiB."""
        assert tail_part_size(10, 1000, MIN_PART_SIZE) == MIN_PART_SIZE
        size = tail_part_size(1 * TB, 1000, PART_SIZE)
        assert size % (1024 * 1024) == 0 and size * 1000 >= 1 * TB

    def test_too_large_for_one_object_is_an_offsite_error(self):
        """More than 1,000 parts of 5 GiB left is refused with an OffsiteError, not a broken upload."""
        with pytest.raises(OffsiteError):
            tail_part_size(1000 * MAX_PART_SIZE + 1, 1000, PART_SIZE)
        with pytest.raises(OffsiteError):
            tail_part_size(1, 0, PART_SIZE)


class TestMemoryBound:
    def test_the_bound_does_not_depend_on_the_dump_size(self):
        """The memory an upload holds is bounded by its part size alone: 41 MiB with the defaults."""
        assert held_bytes_bound(PART_SIZE) == (1 + s3_upload.PARTS_IN_FLIGHT + 2) * PART_SIZE + s3_upload.READ_CHUNK
        assert held_bytes_bound(PART_SIZE) <= 200 * 1000**2
