"""The WAL archive in ``BACKUP_DIR/wal/``: completed segments compressed, checksummed and moved
in atomically, each with a small record; and the way back out, checked.

Layout (one record per file, so archiving a segment never rewrites a shared index)::

    BACKUP_DIR/wal/
      .spool/                             pg_receivewal's own directory: the segment being
                                          received (<name>.partial) and the newest complete one
      000000010000000000000003.gz         a complete segment, gzip (members of 1 MiB)
      000000010000000000000003.json       its record: name, file, sha256 and size of the .gz,
                                          wal_size_bytes, timeline, archived_at
      00000002.history.gz / .json         a timeline's history file, the same way

With ENCRYPT_RECIPIENTS each archived file is an age file around the gzip
(``<name>.gz.age``) and its record says ``"encryption": "age"`` with the recipients'
fingerprints; reading it back needs ENCRYPT_IDENTITY_FILE. The spool is pg_receivewal's own
and stays plain: at most the segment being received and the newest complete one.

With MANIFEST_SIGNING_KEY every record carries an HMAC over its content (but the offsite
fields, written later), like the manifests: a record unsigned or badly signed is untrusted, and
readers that know the key leave it out as if the file were missing (a recovery then refuses
the gap, naming the segment), so whoever can write the bucket cannot slip in WAL of their own.

A segment counts as archived only when its record exists; the record is written after the
``.gz`` is fsynced under its final name, so a crash in between leaves a file that the next pass
archives again. A segment leaves the spool only once archived, and the newest complete one
stays there as well: pg_receivewal resumes after the newest segment in its directory, so the
spool alone (without the slot's help) says where streaming continues.

The recovery window's sweep (wal/prune.py) deletes old files from the archive. It and every
writer of the archive (an archive pass, the S3 copy noting ``offsite_key`` in a record) hold
``archive_lock``, a flock on ``wal/.archive.lock``: the sweep never deletes a file a pass is
writing, and a record it removed is never written back.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

from daemon.backup.compression import Gzip
from daemon.encryption import ENCRYPTION_AGE, Decryption, Encryption, Unencrypted
from daemon.logs import get_logger
from daemon.naming import encrypted_name
from daemon.restore.streams import ArtifactDamaged, gunzip, read_chunks
from daemon.signing import signature_of, signature_problem
from daemon.storage.local import AtomicArtifact, replace_file_atomically
from daemon.wal.segments import history_timeline, is_wal_file, parse_segment

log = get_logger(__name__)

WAL_DIR_NAME = "wal"
SPOOL_DIR_NAME = ".spool"
COMPRESSED_SUFFIX = ".gz"
RECORD_SUFFIX = ".json"
ARCHIVE_LOCK_NAME = ".archive.lock"
BLOCK_SIZE = 1024 * 1024


class WalArchiveError(Exception):
    """A WAL file in the archive is missing, damaged or not what its record says."""


@dataclass(frozen=True)
class WalRecord:
    name: str  # the WAL file's own name, e.g. 000000010000000000000003
    file: str  # the archived file next to the record, e.g. 000000010000000000000003.gz
    sha256: str  # of ``file``
    size_bytes: int  # of ``file``
    wal_size_bytes: int  # of the WAL file itself
    timeline: int
    archived_at: str  # ISO 8601
    offsite_key: str = ""  # the S3 key of its copy, once copied (wal/offsite.py)
    offsite_at: str = ""
    encryption: str = ""  # "age" when ``file`` is an age file (ENCRYPT_RECIPIENTS); "" plain gzip
    recipients: tuple[str, ...] = ()  # fingerprints of the age recipients
    signature: str = ""  # MANIFEST_SIGNING_KEY: HMAC-SHA256 over the signed fields (daemon/signing.py)

    @property
    def encrypted(self) -> bool:
        return bool(self.encryption)

    def _signed_fields(self) -> dict[str, object]:
        record = asdict(self)
        for unsigned in ("offsite_key", "offsite_at"):  # written after the record, when the copy is made
            del record[unsigned]
        record["recipients"] = list(self.recipients)
        return record

    def signed(self, key: bytes | None) -> WalRecord:
        """This record with its signature under ``key`` (unchanged without a key)."""
        if key is None:
            return self
        return replace(self, signature=signature_of(self._signed_fields(), key))

    def signature_problem(self, key: bytes | None) -> str | None:
        """Why the record is not to be trusted under ``key``; None when it is (or without a key)."""
        return signature_problem(self._signed_fields(), key)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> WalRecord:
        record = json.loads(text)
        fields = {key: record[key] for key in cls.__dataclass_fields__ if key in record}
        fields["recipients"] = tuple(fields.get("recipients", ()))
        return cls(**fields)


def wal_dir(backup_dir: Path) -> Path:
    return backup_dir / WAL_DIR_NAME


def spool_dir(backup_dir: Path) -> Path:
    return wal_dir(backup_dir) / SPOOL_DIR_NAME


def ensure_dirs(backup_dir: Path) -> None:
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    wal_dir(backup_dir).mkdir(mode=0o700, exist_ok=True)
    spool_dir(backup_dir).mkdir(mode=0o700, exist_ok=True)


@contextmanager
def archive_lock(backup_dir: Path) -> Iterator[None]:
    """Hold the archive's flock (BACKUP_DIR/wal/.archive.lock) for the block, waiting for it: the
    writers of the archive and the sweep that deletes from it take turns (the module docstring).
    Held for one pass or one deletion sweep at a time, never across an upload."""
    fd = os.open(wal_dir(backup_dir) / ARCHIVE_LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


SET_ASIDE_PREFIX = ".spool-set-aside-"


def set_spool_aside(backup_dir: Path, now: datetime) -> Path | None:
    """Move the spool's files into ``wal/.spool-set-aside-<time>/`` and leave the spool empty, so
    that pg_receivewal starts again from the slot instead of from the newest segment it holds.
    For a server that went back in time (a point-in-time restore, a snapshot restored): the WAL
    the spool holds past the server's history is an undone future, kept (never deleted) but no
    longer resumed from. None when the spool holds nothing. Complete segments are archived first."""
    spool = spool_dir(backup_dir)
    files = [path for path in spool.iterdir() if path.is_file()] if spool.is_dir() else []
    if not files:
        return None
    aside = wal_dir(backup_dir) / f"{SET_ASIDE_PREFIX}{now.strftime('%Y%m%d_%H%M%S')}"
    aside.mkdir(mode=0o700, exist_ok=True)
    for path in files:
        path.rename(aside / path.name)
    return aside


def record_path(archive: Path, name: str) -> Path:
    return archive / f"{name}{RECORD_SUFFIX}"


def timeline_of(name: str) -> int:
    segment = parse_segment(name)
    if segment is not None:
        return segment.timeline
    timeline = history_timeline(name)
    if timeline is None:
        raise ValueError(f"{name!r} is not a WAL segment or history file name")
    return timeline


def archive_file(source: Path, archive: Path, gzip_level: int, now: datetime,
                 encryption: Encryption | None = None, signing_key: bytes | None = None) -> WalRecord:
    """Compress (and with ``encryption``, encrypt) ``source`` into ``archive`` atomically and write
    its record; returns the record."""
    name = source.name
    compressor = Gzip(gzip_level, threads=1)
    compressed = f"{name}{COMPRESSED_SUFFIX}"
    for leftover in (compressed, encrypted_name(compressed)):  # without a record: a pass that died before it
        (archive / leftover).unlink(missing_ok=True)
    file_name = encrypted_name(compressed) if encryption is not None else compressed
    wal_size = 0
    with AtomicArtifact(archive, file_name) as artifact, source.open("rb") as wal:
        stage = encryption.stage(artifact.write) if encryption is not None else Unencrypted(artifact.write)
        with stage:
            while block := wal.read(BLOCK_SIZE):
                wal_size += len(block)
                stage.write(compressor.member(block))
            stage.finish()
        artifact.commit()
    record = WalRecord(name, artifact.final_path.name, artifact.sha256, artifact.size_bytes, wal_size,
                       timeline_of(name), now.isoformat(),
                       encryption=ENCRYPTION_AGE if encryption is not None else "",
                       recipients=tuple(encryption.fingerprints) if encryption is not None else ()
                       ).signed(signing_key)
    replace_file_atomically(record_path(archive, name), record.to_json().encode("utf-8"))
    return record


def archive_completed(backup_dir: Path, gzip_level: int, clock: Callable[[], datetime],
                      encryption: Encryption | None = None, signing_key: bytes | None = None) -> list[WalRecord]:
    """Archive every complete WAL file of the spool that has no record yet, oldest first, then
    remove from the spool what is archived, except the newest complete segment."""
    spool, archive = spool_dir(backup_dir), wal_dir(backup_dir)
    archived = []
    with archive_lock(backup_dir):
        for path in sorted(complete_files(spool), key=lambda path: path.name):
            if not record_path(archive, path.name).exists():
                record = archive_file(path, archive, gzip_level, clock(), encryption, signing_key)
                log.info("wal_archived", file=record.file, size_bytes=record.size_bytes, sha256=record.sha256)
                archived.append(record)
        _trim_spool(spool, archive)
    return archived


def complete_files(spool: Path) -> list[Path]:
    if not spool.is_dir():
        return []
    return [path for path in spool.iterdir() if path.is_file() and is_wal_file(path.name)]


def _trim_spool(spool: Path, archive: Path) -> None:
    segments = sorted((segment, path) for path in complete_files(spool)
                      if (segment := parse_segment(path.name)) is not None)
    for _, path in segments[:-1]:
        if record_path(archive, path.name).exists():
            path.unlink()


def read_records(backup_dir: Path, signing_key: bytes | None = None) -> list[WalRecord]:
    """The records of the archive, by name (segments of one timeline in WAL order). With
    ``signing_key`` (MANIFEST_SIGNING_KEY) a record not signed with it is left out and logged."""
    archive = wal_dir(backup_dir)
    records = []
    if archive.is_dir():
        for path in sorted(archive.glob(f"*{RECORD_SUFFIX}")):
            try:
                record = WalRecord.from_json(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("wal_record_unreadable", file=path.name, error=str(error))
                continue
            problem = record.signature_problem(signing_key)
            if problem is not None:
                log.error("wal_record_untrusted", file=path.name, reason=problem)
                continue
            records.append(record)
    return records


def partial_segment(backup_dir: Path) -> Path | None:
    """The segment pg_receivewal is filling (the newest WAL there is), if any."""
    partials = [path for path in spool_dir(backup_dir).glob("*.partial") if parse_segment(path.name)]
    return max(partials, key=lambda path: path.name) if partials else None


def read_checked(backup_dir: Path, record: WalRecord, decryption: Decryption | None = None) -> Iterator[bytes]:
    """The WAL file's own bytes, after the archived file's sha256 and size matched its record;
    an encrypted one decrypted with ``decryption`` (ENCRYPT_IDENTITY_FILE; IdentityMissing without)."""
    return read_checked_file(wal_dir(backup_dir) / record.file, record, decryption)


def read_checked_file(path: Path, record: WalRecord, decryption: Decryption | None = None) -> Iterator[bytes]:
    """``read_checked`` for an archived file at ``path`` (in the archive, or an offsite copy
    downloaded elsewhere)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as compressed:
            while block := compressed.read(BLOCK_SIZE):
                digest.update(block)
        size = path.stat().st_size
    except OSError as error:
        raise WalArchiveError(f"WAL file {record.name}: cannot read {path}: {error.strerror}") from None
    if digest.hexdigest() != record.sha256 or size != record.size_bytes:
        raise WalArchiveError(f"WAL file {record.name}: {path} does not match its record (sha256 or size differs)")
    stored = read_chunks(path)
    content = (decryption or Decryption(None)).plaintext(stored, record) if record.encrypted else stored
    try:
        yield from gunzip(content, record.file)
    except ArtifactDamaged as error:
        raise WalArchiveError(f"WAL file {record.name}: {error}") from None
