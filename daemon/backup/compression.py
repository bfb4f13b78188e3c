"""gzip-compatible compression of a dump stream, on several cores, by GZIP_LEVEL.

The stream is cut into blocks of BLOCK_SIZE bytes and every block becomes one complete gzip
member, compressed on a pool of GZIP_THREADS threads; the members are written in order. A
file of concatenated members is one standard gzip stream (RFC 1952, section 2.2): gunzip,
zcat and Python's gzip module read it as a whole. Starting a new member every MiB costs about
0.3 % of output size.

Measured on one core with the benchmark's dump (docs/benchmarks.md), against `gzip -6`:
- levels 1-3, ISA-L: 360-660 MB/s, output 8-13 % larger;
- levels 4-9, libdeflate: level 4 180 MB/s and the same size, level 5 170 MB/s and 5 % smaller,
  level 6 140 MB/s and 7 % smaller, 7-9 slower still.
Both engines release the GIL, so the pool's threads compress in parallel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import deflate
from isal import isal_zlib

GZIP_WBITS = 31  # "gzip header and trailer"
FIRST_LIBDEFLATE_LEVEL = 4
BLOCK_SIZE = 1024 * 1024


def engine_for(level: int) -> str:
    if not 1 <= level <= 9:
        raise ValueError(f"gzip level {level} is not 1-9")
    return "isal" if level < FIRST_LIBDEFLATE_LEVEL else "libdeflate"


def available_cpus() -> int:
    """CPUs this process may run on (the container's cpuset, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Gzip:
    """How to compress: the level (1-9) and the number of threads (0: one per available CPU)."""

    level: int
    threads: int = 0

    def __post_init__(self) -> None:
        engine_for(self.level)
        if self.threads < 0:
            raise ValueError(f"gzip threads {self.threads} is negative")

    @property
    def thread_count(self) -> int:
        return self.threads or available_cpus()

    def member(self, block: bytes) -> bytes:
        """``block`` as one complete gzip member."""
        if engine_for(self.level) == "isal":
            return isal_zlib.compress(block, self.level, wbits=GZIP_WBITS)
        return deflate.gzip_compress(block, self.level)
