"""The streaming multipart upload of one artifact to S3 (a file-like object fed while the dump
is written), and the upload of a finished local file (the backlog), with memory bounded at
any dump size."""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import queue
import threading
from pathlib import Path

from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.naming import manifest_name
from daemon.storage.s3 import S3_ERRORS, Bucket, OffsiteError, content_md5, describe

log = get_logger(__name__)

# Part sizes and memory. Parts cut from the stream are held in memory, so they all have one
# size, PART_SIZE, whatever the size of the dump: the memory an upload holds is bounded by
# held_bytes_bound() (41 MiB with the defaults) at any dump size. S3 allows MAX_PARTS parts per
# upload; the first STREAMED_FRACTION of them stream from memory (about 70 GiB of artifact at
# 8 MiB), and what comes after that is uploaded from the local artifact file once it is written,
# in at most the remaining parts, each read from disk as it is sent (tail_part_size). Reading
# the tail back from the finished file costs disk reads and time, but no memory and no
# temporary file in BACKUP_DIR (which may be nearly full).
PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024**3  # S3's maximum for any part
MAX_PARTS = 10_000  # S3's limit per multipart upload
STREAMED_FRACTION = 0.9  # of MAX_PARTS: the rest is kept for the tail read from the local file
PARTS_IN_FLIGHT = 2  # parts queued for the upload thread
READ_CHUNK = 1024 * 1024
def streamed_parts_limit(max_parts: int) -> int:
    """How many parts stream from memory before the rest waits for the local file."""
    return max(1, int(max_parts * STREAMED_FRACTION))


def tail_part_size(remaining: int, parts_left: int, part_size: int) -> int:
    """The size of the parts that upload ``remaining`` bytes from the local file in at most
    ``parts_left`` parts: never below ``part_size``, rounded up to a whole MiB."""
    if parts_left < 1:
        raise OffsiteError("no parts left for the rest of the artifact")
    size = max(part_size, math.ceil(remaining / parts_left))
    size = math.ceil(size / READ_CHUNK) * READ_CHUNK
    if size > MAX_PART_SIZE:
        raise OffsiteError(f"the artifact is too large for one S3 object ({remaining} bytes left for {parts_left} parts)")
    return size


def held_bytes_bound(part_size: int, chunk: int = READ_CHUNK) -> int:
    """The most an upload holds in memory: the buffer (a part plus the chunk being added), the
    part being handed over, the parts queued and the one being sent. Independent of the dump's size."""
    return part_size + chunk + (PARTS_IN_FLIGHT + 2) * part_size


class FileRegion(io.RawIOBase):
    """``length`` bytes of an open file from ``start`` on, read as they are sent: the body of a
    part uploaded from the local artifact, which is never held in memory as a whole."""

    def __init__(self, file: io.BufferedReader, start: int, length: int):
        super().__init__()
        self._file = file
        self._start = start
        self._length = length
        self._position = 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, min(self._length, base + offset))
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        left = self._length - self._position
        if size is None or size < 0 or size > left:
            size = left
        self._file.seek(self._start + self._position)
        data = self._file.read(size)
        self._position += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class UploadStopped(OffsiteError):
    """A stop (shutdown, signal) ended the upload; it was aborted and is no failure of S3."""


class MultipartUpload:
    """A file-like upload of one artifact: ``write()`` fills a part, full parts go to S3 on a
    worker thread while the caller keeps writing, ``complete(manifest)`` finishes the upload,
    checks it against the manifest and uploads the manifest object last. Any failure aborts
    the multipart upload, so no incomplete upload is left in the bucket.

    Memory stays below ``held_bytes_bound(part_size)`` at any size: every part cut from the
    stream has ``part_size`` bytes, and after the streamed parts (most of ``max_parts``) the
    rest is not held at all but uploaded by ``complete`` from ``source``, the local file the
    same bytes were written to. ``held_bytes`` and ``peak_held_bytes`` account for it.

    As a runner sink it never raises from ``write``: an S3 failure must not fail the local
    backup. ``error`` says what went wrong; ``complete`` raises OffsiteError then.

    With ``wait_for_s3=False`` (a sink fed by a running dump) ``write`` never waits for S3:
    when the parts in flight are all taken, S3 is slower than the disk, and the stream stops
    being uploaded from memory there; ``complete`` uploads the rest from ``source``. A slow S3
    then cannot hold pg_dump's snapshot and locks open for the length of the upload.
    """

    def __init__(self, bucket: Bucket, file_name: str, part_size: int = PART_SIZE, *,
                 source: Path | None = None, max_parts: int | None = None, wait_for_s3: bool = True,
                 stop: threading.Event | None = None):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if not wait_for_s3 and source is None:
            raise ValueError("an upload that does not wait for S3 needs the local file (source) to catch up from")
        self.bucket = bucket
        self.file_name = file_name
        self.key = bucket.key(file_name)
        self.part_size = part_size
        self.source = source
        self.max_parts = max_parts or MAX_PARTS
        self.streamed_parts = streamed_parts_limit(self.max_parts)  # lowered when S3 falls behind
        self.wait_for_s3 = wait_for_s3
        self.error: BaseException | None = None
        self.size_bytes = 0
        self.peak_held_bytes = 0
        self._sha256 = hashlib.sha256()
        self._buffer = bytearray()
        self._parts_cut = 0
        self._parts_held = 0  # bytes of parts cut and not yet sent
        self._held_lock = threading.Lock()
        self._upload_id: str | None = None
        self._parts: list[dict] = []
        self._queue: queue.Queue = queue.Queue(maxsize=PARTS_IN_FLIGHT)
        self._worker: threading.Thread | None = None
        self._finished = False
        self._stop = stop  # a set stop ends what is read from disk (the tail, the backlog) between parts

    @property
    def held_bytes(self) -> int:
        return len(self._buffer) + self._parts_held

    @property
    def streamed_bytes(self) -> int:
        """The bytes that go up from memory; the rest (if any) comes from ``source``."""
        return min(self.size_bytes, self.streamed_parts * self.part_size)

    @property
    def streaming_done(self) -> bool:
        """Every further byte goes up from ``source`` in ``complete``, not from ``write``."""
        return self._parts_cut >= self.streamed_parts

    def skip(self, length: int) -> None:
        """Count ``length`` more bytes without being given them, once ``streaming_done``: the
        backlog, reading ``source`` itself, need not read the tail twice."""
        if not self.streaming_done:
            raise ValueError("skip() only after the streamed parts")
        self.size_bytes += length

    # --- the sink protocol ------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.error is not None or self._finished:
            return
        self.size_bytes += len(data)
        if self.streaming_done:
            return  # the tail: uploaded from the local file by complete()
        self._buffer += data
        self._note_held()
        while len(self._buffer) >= self.part_size and self.error is None:
            if self._s3_is_behind():
                self._leave_the_rest_to_source()
                return
            with memoryview(self._buffer) as view:
                part = bytes(view[:self.part_size])  # one copy (a bytearray slice would be a second)
            self._hold(len(part))
            del self._buffer[:self.part_size]
            self._parts_cut += 1
            if self.streaming_done:
                self._buffer = bytearray()  # the rest of it is in the tail
            self._submit(part)

    def _s3_is_behind(self) -> bool:
        """Every part in flight is taken, so the next one would wait (only the upload thread
        empties the queue, so a part put after this said False never waits)."""
        return not self.wait_for_s3 and self._queue.full()

    def _leave_the_rest_to_source(self) -> None:
        """Upload nothing more from the stream: ``complete`` sends every byte after the parts
        already cut from ``source``, the committed artifact."""
        self.streamed_parts = self._parts_cut
        self._buffer = bytearray()
        log.info("offsite_upload_behind", key=self.key, from_byte=self.streamed_bytes)

    def _hold(self, size: int) -> None:
        with self._held_lock:
            self._parts_held += size
        self._note_held()

    def _release(self, size: int) -> None:
        with self._held_lock:
            self._parts_held -= size

    def _note_held(self) -> None:
        self.peak_held_bytes = max(self.peak_held_bytes, self.held_bytes)

    def complete(self, manifest: Manifest) -> dict:
        """Finish the upload and return the offsite record for the manifest; raises OffsiteError."""
        if self._finished:
            raise OffsiteError("upload already finished")
        try:
            if self.error is None:
                self._finish(manifest)
        except S3_ERRORS + (OffsiteError,) as error:
            self.error = self.error or error
        if self.error is not None:
            self.abort()
            if isinstance(self.error, UploadStopped):
                raise self.error
            raise OffsiteError(f"upload of {self.file_name} failed: {describe(self.error)}") from self.error
        self._finished = True
        return {"status": "complete", "bucket": self.bucket.name, "key": self.key,
                "size_bytes": self.size_bytes, "sha256": manifest.sha256}

    def abort(self) -> None:
        """Stop the worker and abort the multipart upload, if one was started. Never raises."""
        if self._finished:
            return
        self._finished = True
        self._buffer = bytearray()
        self._stop_worker()
        if self._upload_id is not None:
            try:
                self.bucket.client.abort_multipart_upload(
                    Bucket=self.bucket.name, Key=self.key, UploadId=self._upload_id
                )
                log.info("offsite_upload_aborted", key=self.key)
            except S3_ERRORS as error:
                log.error("offsite_abort_failed", key=self.key, error=describe(error))
            self._upload_id = None

    # --- internals --------------------------------------------------------------------
    def _submit(self, part: bytes) -> None:
        """Queue a part the caller has ``_hold``; a part that is not queued is released."""
        try:
            if self._upload_id is None:
                self._start()
        except S3_ERRORS as error:
            self._failed(error)
        while self.error is None:
            try:
                self._queue.put(part, timeout=0.5)
                return
            except queue.Full:
                if self._worker is None or not self._worker.is_alive():
                    break
        self._release(len(part))

    def _start(self) -> None:
        created = self.bucket.client.create_multipart_upload(
            Bucket=self.bucket.name, Key=self.key, ContentType="application/octet-stream",
            **self.bucket.put_options(),
        )
        self._upload_id = created["UploadId"]
        self._worker = threading.Thread(target=self._upload_parts, name=f"s3-upload-{self.file_name}", daemon=True)
        self._worker.start()

    def _upload_parts(self) -> None:
        while True:
            part = self._queue.get()
            if part is None:
                return
            try:
                if self.error is None:
                    self._upload_part(part)
            except S3_ERRORS as error:
                self._failed(error)
            finally:
                self._release(len(part))
            if self.error is not None:
                return

    def _upload_part(self, part: bytes) -> None:
        # Hashed here, on the upload thread (parts arrive in order), not on the writer thread
        # that also compresses the dump.
        self._sha256.update(part)
        number = len(self._parts) + 1
        response = self.bucket.client.upload_part(
            Bucket=self.bucket.name, Key=self.key, UploadId=self._upload_id, PartNumber=number,
            Body=part, ContentMD5=content_md5(part),
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def _failed(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
            log.error("offsite_upload_failed", key=self.key, error=describe(error))

    def _drain_worker(self) -> None:
        """Let the worker upload every queued part, then end it."""
        if self._worker is None:
            return
        while self._worker.is_alive():
            try:
                self._queue.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self._worker.join()

    def _stop_worker(self) -> None:
        """End the worker at once, dropping the parts not yet uploaded."""
        if self._worker is None:
            return
        try:
            while True:
                part = self._queue.get_nowait()
                if part is not None:
                    self._release(len(part))
        except queue.Empty:
            pass
        try:
            self._queue.put(None, timeout=5)
        except queue.Full:
            pass
        self._worker.join(timeout=120)

    def _check_against(self, manifest: Manifest) -> None:
        if self._sha256.hexdigest() != manifest.sha256 or self.size_bytes != manifest.size_bytes:
            raise OffsiteError("the bytes sent differ from the manifest's size or sha256")

    def _finish(self, manifest: Manifest) -> None:
        if self.size_bytes != manifest.size_bytes:
            raise OffsiteError("the bytes sent differ from the manifest's size or sha256")
        if self._upload_id is None and len(self._buffer) < self.part_size:
            self._sha256.update(self._buffer)
            self._check_against(manifest)
            self.bucket.client.put_object(
                Bucket=self.bucket.name, Key=self.key, Body=bytes(self._buffer),
                ContentMD5=content_md5(self._buffer), **self.bucket.put_options(),
            )
        else:
            if self._buffer:
                last = bytes(self._buffer)
                self._hold(len(last))
                self._buffer = bytearray()
                self._submit(last)
            self._drain_worker()
            if self.error is not None:
                return
            self.check_stop()
            if self.size_bytes > self.streamed_bytes:
                self._upload_tail()
            self._check_against(manifest)
            self.check_stop()
            self.bucket.client.complete_multipart_upload(
                Bucket=self.bucket.name, Key=self.key, UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
            self._upload_id = None
        head = self.bucket.client.head_object(Bucket=self.bucket.name, Key=self.key)
        if head["ContentLength"] != manifest.size_bytes:
            raise OffsiteError(
                f"the uploaded object has {head['ContentLength']} bytes, the manifest says {manifest.size_bytes}"
            )

    def _upload_tail(self) -> None:
        """The bytes after the streamed parts, from the local file, in parts read from disk as
        they are sent (the file is complete by now: the artifact is committed before sinks complete)."""
        if self.source is None:
            raise OffsiteError(f"{self.file_name} is larger than {self.streamed_bytes} bytes, which is all that "
                               "can stream from memory, and there is no local file to upload the rest from")
        start, end = self.streamed_bytes, self.size_bytes
        size = tail_part_size(end - start, self.max_parts - len(self._parts), self.part_size)
        log.info("offsite_upload_tail", key=self.key, from_byte=start, part_size=size)
        try:
            with self.source.open("rb") as file:
                for offset in range(start, end, size):
                    self.check_stop()
                    self._upload_region(file, offset, min(size, end - offset))
        except OSError as error:
            raise OffsiteError(f"cannot read {self.source.name}: {error.strerror}") from error

    def _upload_region(self, file: io.BufferedReader, start: int, length: int) -> None:
        """One part from the file: hashed in a first pass, sent in a second; Content-MD5 makes
        the server refuse it if the bytes changed between the two."""
        md5 = hashlib.md5()
        file.seek(start)
        left = length
        while left:
            chunk = file.read(min(READ_CHUNK, left))
            if not chunk:
                raise OffsiteError(f"{self.file_name} is shorter than the {self.size_bytes} bytes written")
            md5.update(chunk)
            self._sha256.update(chunk)
            left -= len(chunk)
        number = len(self._parts) + 1
        response = self.bucket.client.upload_part(
            Bucket=self.bucket.name, Key=self.key, UploadId=self._upload_id, PartNumber=number,
            Body=FileRegion(file, start, length), ContentLength=length,
            ContentMD5=base64.b64encode(md5.digest()).decode(),
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def check_stop(self) -> None:
        if self._stop is not None and self._stop.is_set():
            raise UploadStopped(f"upload of {self.file_name} stopped: a stop was requested")

    def upload_manifest(self, manifest: Manifest) -> None:
        """The manifest object, uploaded last: its presence marks the copy complete."""
        body = manifest.to_json().encode("utf-8")
        self.bucket.client.put_object(
            Bucket=self.bucket.name, Key=self.bucket.key(manifest_name(manifest.file)),
            Body=body, ContentType="application/json", ContentMD5=content_md5(body),  # Object Lock requires it
            **self.bucket.put_options(),
        )


def upload_file(bucket: Bucket, path: Path, manifest: Manifest, part_size: int = PART_SIZE,
                stop: threading.Event | None = None) -> dict:
    """Upload a local artifact (the backlog), then its manifest; returns the offsite record.
    A set ``stop`` aborts the upload at the next part and raises UploadStopped."""
    upload = MultipartUpload(bucket, manifest.file, part_size, source=path, stop=stop)
    try:
        with path.open("rb") as file:
            for chunk in iter(lambda: file.read(READ_CHUNK), b""):
                if stop is not None and stop.is_set():
                    upload.abort()
                    upload.check_stop()
                upload.write(chunk)
                if upload.error is not None:
                    break
                if upload.streaming_done:
                    upload.skip(os.fstat(file.fileno()).st_size - file.tell())
                    break
    except OSError as error:
        upload.abort()
        raise OffsiteError(f"cannot read {path.name}: {error.strerror}") from error
    return upload.complete(manifest)
