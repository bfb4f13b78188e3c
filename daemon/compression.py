"""gzip-compatible compression of a dump stream (zlib-ng: same format, faster than zlib)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from zlib_ng import zlib_ng

GZIP_WBITS = 31  # zlib's "gzip header and trailer" mode


def gzip_stream(chunks: Iterable[bytes], level: int) -> Iterator[bytes]:
    """Compress a stream of chunks into one gzip member, chunk by chunk."""
    compressor = zlib_ng.compressobj(level, zlib_ng.DEFLATED, GZIP_WBITS)
    for chunk in chunks:
        compressed = compressor.compress(chunk)
        if compressed:
            yield compressed
    yield compressor.flush()
