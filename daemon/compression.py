"""gzip-compatible compression of a dump stream, by GZIP_LEVEL.

Measured on this project's benchmark data (docs/benchmarks.md), on one core:
ISA-L writes gzip at 300-600 MB/s but about 8-13 % larger than `gzip -6`; zlib-ng at
level 4 writes output as small as `gzip -6` at about 155 MB/s. So levels 1-3 use ISA-L
(fast enough to keep up with pg_dumpall), levels 4-9 use zlib-ng at that level (output
the size of gzip's, slower). Both release the GIL, so compression runs in parallel with
reading the dump.
"""

from __future__ import annotations

from isal import isal_zlib
from zlib_ng import zlib_ng

GZIP_WBITS = 31  # "gzip header and trailer"
FASTEST_ZLIB_NG_LEVEL = 4


def engine_for(level: int) -> str:
    if not 1 <= level <= 9:
        raise ValueError(f"gzip level {level} is not 1-9")
    return "isal" if level < FASTEST_ZLIB_NG_LEVEL else "zlib-ng"


class GzipCompressor:
    """One gzip member, fed chunk by chunk."""

    def __init__(self, level: int):
        if engine_for(level) == "isal":
            self._compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, GZIP_WBITS)
        else:
            self._compressor = zlib_ng.compressobj(level, zlib_ng.DEFLATED, GZIP_WBITS)

    def compress(self, chunk: bytes) -> bytes:
        return self._compressor.compress(chunk)

    def flush(self) -> bytes:
        return self._compressor.flush()
