import gzip
import subprocess
import threading

import pytest

from daemon.backup.compression import BLOCK_SIZE, Gzip, available_cpus, engine_for
from daemon.backup.pipeline import PipelinedWriter

SQL = b"".join(b"INSERT INTO t VALUES (%d, 'row %d', '{\"k\": %d}');\n" % (i, i, i % 7) for i in range(20000))


def compressed(data: bytes, gzip_setting: Gzip, chunk: int = 7777) -> bytes:
    """Feed ``data`` through a PipelinedWriter in uneven chunks; return what it wrote."""
    written = []
    with PipelinedWriter(written.append, gzip_setting) as writer:
        for start in range(0, len(data), chunk):
            writer.put(data[start:start + chunk])
        writer.finish()
    return b"".join(written)


class TestGzip:
    @pytest.mark.parametrize("level", range(1, 10))
    def test_every_level_writes_a_member_gunzip_reads(self, level):
        """Whatever the level and engine, one block is one standard gzip member."""
        assert gzip.decompress(Gzip(level).member(SQL)) == SQL

    def test_engines_by_level(self):
        """Levels 1-3 use ISA-L, 4-9 use libdeflate."""
        assert [engine_for(level) for level in range(1, 10)] == ["isal"] * 3 + ["libdeflate"] * 6

    def test_default_level_is_smaller_than_gzip_6(self):
        """The default level (5, libdeflate) writes less than `gzip -6` on SQL text."""
        assert len(Gzip(5).member(SQL)) < len(gzip.compress(SQL, compresslevel=6))

    @pytest.mark.parametrize("level", [0, 10])
    def test_out_of_range(self, level):
        """Levels outside 1-9 are refused."""
        with pytest.raises(ValueError):
            Gzip(level)

    def test_threads_zero_means_every_available_cpu(self):
        assert Gzip(5, threads=0).thread_count == available_cpus() >= 1
        assert Gzip(5, threads=3).thread_count == 3


class TestPipelinedCompression:
    @pytest.mark.parametrize("threads", [1, 2, 4])
    def test_many_blocks_come_out_in_order_as_one_gzip_stream(self, threads):
        """A stream several blocks long becomes concatenated members in the input's order, which
        the real gunzip reads back as the exact input."""
        data = b"".join(b"%08d %s\n" % (i, SQL[i % 5000:i % 5000 + 90]) for i in range(60000))
        assert len(data) > 3 * BLOCK_SIZE
        output = compressed(data, Gzip(5, threads), chunk=100_000)
        unzipped = subprocess.run(["gunzip", "-c"], input=output, capture_output=True, check=True).stdout
        assert unzipped == data

    def test_an_empty_dump_is_a_valid_empty_gzip_file(self):
        output = compressed(b"", Gzip(2))
        assert output and gzip.decompress(output) == b""

    def test_uncompressed_chunks_pass_through_unchanged(self):
        assert compressed(SQL, None) == SQL

    def test_a_failing_write_surfaces_in_the_reading_thread(self):
        """The writer's error stops the reader at a later hand-off, not silently."""
        def failing_write(block):
            raise OSError(28, "No space left on device")

        with pytest.raises(OSError, match="No space left"):
            with PipelinedWriter(failing_write, Gzip(1, 2)) as writer:
                for _ in range(200):
                    writer.put(b"x" * 100_000)
                writer.finish()

    def test_a_failing_compression_surfaces_in_the_reading_thread(self):
        class Broken(Gzip):
            def member(self, block):
                raise MemoryError("compression failed")

        with pytest.raises(MemoryError, match="compression failed"):
            with PipelinedWriter(lambda block: None, Broken(5, 2)) as writer:
                for _ in range(200):
                    writer.put(b"x" * 100_000)
                writer.finish()

    def test_compression_threads_end_with_the_writer(self):
        before = {t.name for t in threading.enumerate()}
        compressed(SQL * 20, Gzip(5, 2))
        left = {t.name for t in threading.enumerate()} - before
        assert not [name for name in left if name.startswith(("gzip", "artifact-writer"))]
