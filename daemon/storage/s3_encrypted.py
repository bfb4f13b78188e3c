"""Encrypted S3 copies of plain local artifacts (ENCRYPT_SCOPE=offsite): the committed local
file is read, encrypted with age while it streams and uploaded as ``<file>.age`` with a manifest
of its own that says so. Nothing decrypted or encrypted ever reaches the disk.

The copy's manifest is the local one with the encrypted name, ``encryption``, the recipients and
the sha256 and size of the bytes uploaded (what a restore from S3 checks), signed again with
MANIFEST_SIGNING_KEY. The local manifest's ``offsite`` record points at the copy.

Memory: the upload streams from memory only (there is no local file of the encrypted bytes to
read a tail back from), in parts of PART_SIZE, larger for large artifacts up to MAX_COPY_PART_SIZE,
so an upload holds at most ``held_bytes_bound(MAX_COPY_PART_SIZE)`` (about 160 MiB). An artifact
too large for that is refused with the reason; ENCRYPT_SCOPE=all has no such limit.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import replace
from pathlib import Path

from daemon.encryption import ENCRYPTION_AGE, Encryption
from daemon.manifest import Manifest
from daemon.naming import encrypted_name
from daemon.storage.s3 import Bucket, OffsiteError
from daemon.storage.s3_upload import (
    MAX_PARTS,
    PART_SIZE,
    READ_CHUNK,
    MultipartUpload,
    UploadStopped,
    streamed_parts_limit,
)

MAX_COPY_PART_SIZE = 32 * 1024 * 1024
AGE_OVERHEAD = 1.001  # age adds 16 bytes per 64 KiB chunk and a header of a few hundred bytes


def copy_part_size(plain_size: int, part_size: int = PART_SIZE) -> int:
    """Parts large enough for the whole encrypted copy to stream from memory; OffsiteError when
    even MAX_COPY_PART_SIZE is not."""
    parts = streamed_parts_limit(MAX_PARTS)
    needed = math.ceil(plain_size * AGE_OVERHEAD / parts / READ_CHUNK) * READ_CHUNK
    size = max(part_size, needed)
    if size > MAX_COPY_PART_SIZE:
        largest = parts * MAX_COPY_PART_SIZE / AGE_OVERHEAD / 2**30
        raise OffsiteError(f"the artifact ({plain_size / 2**30:.0f} GiB) is larger than the {largest:.0f} GiB an "
                           "encrypted S3 copy of a plain local file can be (ENCRYPT_SCOPE=offsite); use "
                           "ENCRYPT_SCOPE=all for artifacts this large")
    return size


def copy_manifest(manifest: Manifest, encryption: Encryption) -> Manifest:
    """The S3 copy's manifest before its bytes are known: the encrypted name, age and the recipients."""
    return replace(manifest, file=encrypted_name(manifest.file), encryption=ENCRYPTION_AGE,
                   recipients=list(encryption.fingerprints), offsite={}, signature="")


def upload_encrypted_copy(bucket: Bucket, path: Path, manifest: Manifest, encryption: Encryption,
                          signing_key: bytes | None, part_size: int = PART_SIZE,
                          stop: threading.Event | None = None) -> dict:
    """Encrypt the local artifact ``path`` while uploading it, then upload the copy's manifest;
    returns the offsite record for the local manifest. A set ``stop`` aborts it (UploadStopped)."""
    if manifest.encrypted:
        raise OffsiteError(f"{manifest.file} is encrypted already; it is copied as it is")
    copy = copy_manifest(manifest, encryption)
    size = copy_part_size(path.stat().st_size, part_size)
    upload = MultipartUpload(bucket, copy.file, size, stop=stop)
    digest = hashlib.sha256()
    sent = 0

    def send(block: bytes) -> None:
        nonlocal sent
        digest.update(block)
        sent += len(block)
        upload.write(block)

    try:
        with encryption.stage(send) as stage, path.open("rb") as plain:
            while chunk := plain.read(READ_CHUNK):
                if stop is not None and stop.is_set():
                    raise UploadStopped(f"upload of {copy.file} stopped: a stop was requested")
                stage.write(chunk)
                if upload.error is not None:
                    break
            stage.finish()
    except OSError as error:
        upload.abort()
        raise OffsiteError(f"cannot read {path.name}: {error.strerror}") from error
    except BaseException:
        upload.abort()
        raise
    copy.sha256, copy.size_bytes = digest.hexdigest(), sent
    copy.sign(signing_key)
    record = upload.complete(copy)
    upload.upload_manifest(copy)
    return {**record, "file": copy.file, "encryption": ENCRYPTION_AGE}
