"""The offsite copies read back for a point-in-time recovery whose local copies are gone (the
host's disk lost): the WAL records under ``<S3_PREFIX>/wal/`` (wal/offsite.py writes them), and a
WAL file or a base backup downloaded into a scratch directory, checked against its record or
manifest before anything is restored from it.

Only what a recovery can use is read: records of segments from the base backup's start on (and
history files), and none that the local archive has. With MANIFEST_SIGNING_KEY a record not
signed with it is left out, as if the file were missing (the recovery then refuses the gap,
naming the segment): whoever can write the bucket cannot slip in WAL of their own. The
``.partial`` segment is never copied offsite, so from S3 alone a recovery reaches the newest
complete segment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.restore.streams import ArtifactDamaged
from daemon.storage.s3 import Bucket
from daemon.wal.archive import RECORD_SUFFIX, WalArchiveError, WalRecord
from daemon.wal.offsite import WAL_FOLDER, wal_key
from daemon.wal.segments import Segment, history_timeline, parse_segment

log = get_logger(__name__)

DOWNLOAD_BLOCK = 1 << 20


def wanted_record(name: str, since: Segment | None) -> bool:
    """A record worth reading: a history file, or a segment on ``since``'s timeline or a later
    one, from ``since`` on (None: every segment)."""
    if history_timeline(name) is not None:
        return True
    segment = parse_segment(name)
    if segment is None:
        return False
    return since is None or (segment.timeline >= since.timeline and segment.number >= since.number)


@dataclass
class OffsiteWal:
    """The bucket's copy of the WAL archive and base backups, read on demand."""

    bucket: Bucket
    signing_key: bytes | None = None
    _names: list[str] | None = field(default=None, repr=False)  # the record names listed, once
    _read: dict[str, WalRecord | None] = field(default_factory=dict, repr=False)  # records read, by name

    def record_names(self) -> list[str]:
        """The WAL file names that have a record under ``<prefix>/wal/`` (listed once)."""
        if self._names is None:
            folder = f"{self.bucket.prefix}{WAL_FOLDER}"
            names = []
            paginator = self.bucket.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket.name, Prefix=folder, Delimiter="/"):
                for item in page.get("Contents", ()):
                    leaf = item["Key"][len(folder):]
                    if leaf.endswith(RECORD_SUFFIX):
                        names.append(leaf.removesuffix(RECORD_SUFFIX))
            self._names = sorted(names)
        return self._names

    def records(self, since: Segment | None, skip: set[str]) -> list[WalRecord]:
        """The trusted records of the copies a recovery from ``since`` can use, except the names in
        ``skip`` (those the local archive has)."""
        records = []
        for name in self.record_names():
            if name in skip or not wanted_record(name, since):
                continue
            record = self._read_record(name)
            if record is not None:
                records.append(record)
        return records

    def _read_record(self, name: str) -> WalRecord | None:
        if name not in self._read:
            self._read[name] = self._fetch_record(name)
        return self._read[name]

    def _fetch_record(self, name: str) -> WalRecord | None:
        key = wal_key(self.bucket, f"{name}{RECORD_SUFFIX}")
        body = self.bucket.client.get_object(Bucket=self.bucket.name, Key=key)["Body"].read()
        try:
            record = WalRecord.from_json(body.decode("utf-8"))
        except (ValueError, KeyError, TypeError) as error:
            log.warning("wal_record_unreadable", key=key, error=str(error))
            return None
        problem = record.signature_problem(self.signing_key)
        if problem is not None or record.name != name:
            log.error("wal_record_untrusted", key=key, location="s3", reason=problem or "names another file")
            return None
        return record

    def fetch_wal(self, record: WalRecord, directory: Path) -> Path:
        """``record``'s file downloaded into ``directory``, its sha256 and size checked."""
        path = directory / record.file
        try:
            self._download(wal_key(self.bucket, record.file), path, record.sha256, record.size_bytes)
        except ArtifactDamaged as error:
            raise WalArchiveError(f"WAL file {record.name}: the S3 copy {error}") from None
        return path

    def fetch_base(self, manifest: Manifest, directory: Path) -> Path:
        """The base backup's S3 copy downloaded into ``directory``, checked against its manifest."""
        path = directory / manifest.file
        log.info("offsite_download_started", file=manifest.file)
        self._download(self.bucket.key(manifest.file), path, manifest.sha256, manifest.size_bytes)
        log.info("offsite_download_finished", file=manifest.file)
        return path

    def _download(self, key: str, path: Path, sha256: str, size: int) -> None:
        """Streamed into ``path`` block by block; ArtifactDamaged unless sha256 and size match."""
        body = self.bucket.client.get_object(Bucket=self.bucket.name, Key=key)["Body"]
        digest, total = hashlib.sha256(), 0
        with path.open("wb") as out:
            for block in body.iter_chunks(DOWNLOAD_BLOCK):
                digest.update(block)
                total += len(block)
                out.write(block)
        if total != size or digest.hexdigest() != sha256:
            raise ArtifactDamaged(f"{key} does not match its record (sha256 or size differs)")
