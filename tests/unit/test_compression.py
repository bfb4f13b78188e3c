import gzip

import pytest

from daemon.compression import GzipCompressor, engine_for

SQL = b"".join(b"INSERT INTO t VALUES (%d, 'row %d', '{\"k\": %d}');\n" % (i, i, i % 7) for i in range(20000))


class TestGzipCompressor:
    @pytest.mark.parametrize("level", range(1, 10))
    def test_every_level_writes_standard_gzip(self, level):
        """Whatever the level and engine, gunzip reads back exactly the input, fed in uneven chunks."""
        compressor = GzipCompressor(level)
        pieces = [compressor.compress(SQL[i:i + 7777]) for i in range(0, len(SQL), 7777)]
        assert gzip.decompress(b"".join(pieces) + compressor.flush()) == SQL

    def test_engines_by_level(self):
        """Levels 1-3 use ISA-L, 4-9 use zlib-ng."""
        assert [engine_for(level) for level in range(1, 10)] == ["isal"] * 3 + ["zlib-ng"] * 6

    def test_higher_levels_are_not_larger(self):
        """Level 6 (zlib-ng) is no larger than level 2 (ISA-L) on SQL text."""
        def size(level):
            compressor = GzipCompressor(level)
            return len(compressor.compress(SQL) + compressor.flush())
        assert size(6) <= size(2)

    @pytest.mark.parametrize("level", [0, 10])
    def test_out_of_range(self, level):
        """Levels outside 1-9 are refused."""
        with pytest.raises(ValueError):
            GzipCompressor(level)
