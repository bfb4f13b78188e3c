"""gzip-compatible compression of a dump stream.

ISA-L (python-isal) writes standard gzip several times faster than zlib; measured on SQL
dump text here it compresses about as well as `gzip -6` at level 1-2 (see docs/benchmarks.md).
COMPRESSION_LEVEL keeps gzip's familiar 1-9 scale and maps onto ISA-L's levels 0-3.
The compressor releases the GIL, so it runs in parallel with reading the dump.
"""

from __future__ import annotations

from isal import isal_zlib

GZIP_WBITS = 31  # "gzip header and trailer"


def isal_level(level: int) -> int:
    """gzip's 1-9 onto ISA-L's 0-3: 1 -> 0, 2-4 -> 1, 5-7 -> 2, 8-9 -> 3."""
    if not 1 <= level <= 9:
        raise ValueError(f"compression level {level} is not 1-9")
    return 0 if level == 1 else 1 if level <= 4 else 2 if level <= 7 else 3


class GzipCompressor:
    """One gzip member, fed chunk by chunk."""

    def __init__(self, level: int):
        self._compressor = isal_zlib.compressobj(isal_level(level), isal_zlib.DEFLATED, GZIP_WBITS)

    def compress(self, chunk: bytes) -> bytes:
        return self._compressor.compress(chunk)

    def flush(self) -> bytes:
        return self._compressor.flush()
