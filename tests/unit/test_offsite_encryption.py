"""ENCRYPT_SCOPE=offsite, the parts that need no server: the part size of an encrypted copy (memory
bounded, a clear refusal beyond it) and the encrypted copy of an archived WAL file with its record."""

from __future__ import annotations

from datetime import datetime, timezone

import pyrage
import pytest

from daemon.encryption import Encryption
from daemon.storage.s3 import OffsiteError
from daemon.storage.s3_encrypted import MAX_COPY_PART_SIZE, copy_part_size
from daemon.storage.s3_upload import PART_SIZE, held_bytes_bound
from daemon.wal import archive
from daemon.wal.offsite import encrypted_copy
from daemon.wal.segments import Segment

GiB = 2**30
KEY = b"s" * 32


class TestCopyPartSize:
    def test_small_artifacts_use_the_default_part_size(self):
        assert copy_part_size(10 * GiB) == PART_SIZE

    def test_large_artifacts_get_larger_parts_and_memory_stays_bounded(self):
        size = copy_part_size(200 * GiB)
        assert PART_SIZE < size <= MAX_COPY_PART_SIZE and size % (1024 * 1024) == 0
        assert size * 9000 >= 200 * GiB * 1.001
        assert held_bytes_bound(MAX_COPY_PART_SIZE) <= 200 * 1000**2

    def test_an_artifact_too_large_is_refused_naming_the_setting_to_use(self):
        with pytest.raises(OffsiteError, match="ENCRYPT_SCOPE=all"):
            copy_part_size(400 * GiB)


class TestEncryptedWalCopy:
    def test_the_copy_decrypts_to_the_archived_file_and_its_record_says_age(self, tmp_path):
        identity = pyrage.x25519.Identity.generate()
        archive.ensure_dirs(tmp_path)
        (archive.spool_dir(tmp_path) / Segment(1, 1).name).write_bytes(b"wal " * 4096)
        (record,) = archive.archive_completed(tmp_path, 1, lambda: datetime.now(timezone.utc), signing_key=KEY)
        plain = (archive.wal_dir(tmp_path) / record.file).read_bytes()

        data, copy = encrypted_copy(plain, record, Encryption((str(identity.to_public()),)), KEY)

        assert pyrage.decrypt(data, [identity]) == plain
        assert copy.name == record.name and copy.file == f"{record.file}.age" and copy.encryption == "age"
        assert copy.size_bytes == len(data) and copy.sha256 != record.sha256
        assert copy.signature and copy.signature_problem(KEY) is None and copy.offsite_key == ""
