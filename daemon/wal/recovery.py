"""Point-in-time recovery into a volume: a base backup unpacked, the WAL it needs staged, and
PostgreSQL run in a throwaway container until it has recovered to the target and promoted.

``plan_wal`` (pure) chooses the WAL and refuses a hole before anything is written; the
newest WAL is the spool's ``.partial`` segment, staged under its plain name when no complete
segment of that name exists (pg_receivewal pads it to the full size). What the local archive
lacks (the base backup, WAL files) comes from the offsite copy (``remote.OffsiteWal``) when one
is given, downloaded into the scratch directory and checked. ``recover_into_volume`` does the
work: every file is read and checked before the volume is touched; the volume is prepared as
`restore-volume` does (created, or unused and empty, or emptied with ``force``); the recovery
settings are given on the server's command line (``-c``), not written into the data directory,
so once the server has promoted and stopped cleanly (``pg_ctl stop -m fast``, then
``pg_controldata`` says "shut down") and the staged WAL is removed, the volume starts as a
normal server under the compose service.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import docker.errors
from docker.models.containers import Container

from daemon.encryption import Decryption
from daemon.errors import PgBackupError
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.naming import RESTORE_SCRATCH_PREFIX
from daemon.restore.streams import check_sha256
from daemon.volumes.transfer import prepare_target
from daemon.wal.archive import (
    WalArchiveError,
    WalRecord,
    partial_segment,
    read_checked,
    read_checked_file,
    read_records,
    wal_dir,
)
from daemon.wal.segments import Segment, find_gaps, history_timeline, parse_lsn, parse_segment, segment_of

log = get_logger(__name__)

PGDATA = "/var/lib/postgresql/data"
STAGED_WAL = "pgbackup_wal"  # inside PGDATA while recovery runs, removed after
RECOVERY_LOG = "pgbackup_recovery.log"
RECOVERY_LABEL = "org.pgbackup.pitr-recovery"
# As root in the recovery container: the data directory the postgres user's with mode 0700 (the
# base tar carries the server's uid, the staged WAL root's), recovery asked for, and the socket
# directory that images without the official entrypoint's set-up lack.
_PREPARE = (f"chown -R postgres:postgres {PGDATA} && chmod 0700 {PGDATA} && touch {PGDATA}/recovery.signal "
            "&& mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql")


class RecoveryRefused(PgBackupError):
    """The recovery cannot reach its target with what is stored (said before anything is written)."""


class RecoveryFailed(PgBackupError):
    """PostgreSQL did not recover, promote or stop cleanly."""


if TYPE_CHECKING:  # the S3 client (boto3) is imported only when offsite copies are read
    from daemon.wal.remote import OffsiteWal


@dataclass(frozen=True)
class WalPlan:
    records: list[WalRecord]  # complete segments and history files, in order
    partial: Path | None  # the .partial segment, staged under its plain name
    newest_segment: Segment | None


@dataclass
class RecoveryReport:
    volume: str
    base: str
    target: str  # the recovery_target_time given, or "latest"
    reached: str  # the time of the last transaction replayed, as PostgreSQL reports it
    segments_staged: int
    seconds: float
    log_tail: list[str] = field(default_factory=list)
    fetched_offsite: list[str] = field(default_factory=list)  # files read from S3 (the base, WAL files)
    partial_staged: bool = False  # the newest commits (.partial) were there; without, the newest complete segment
    volume_wiped: bool = False  # --force emptied a volume that held data


def plan_wal(records: list[WalRecord], partial: Path | None, base: Manifest) -> WalPlan:
    """The WAL a recovery from ``base`` needs: every archived segment on the base's timeline (or a
    later one) from its start on, history files, and the partial segment. Refused when the
    segments after the base have a hole, or when the first one after the base's own WAL (which
    its tar carries, -X fetch) is missing."""
    timeline = int(base.details["timeline"])
    start = base_start(base)
    stop = segment_of(parse_lsn(str(base.details["stop_lsn"])), timeline)
    segments = {}
    histories = []
    for record in records:
        segment = parse_segment(record.name)
        if segment is not None and segment.timeline >= timeline and segment.number >= start.number:
            segments[segment] = record
        elif history_timeline(record.name) is not None:
            histories.append(record)
    partial_segment = parse_segment(partial.name) if partial is not None else None
    if partial_segment is not None and partial_segment in segments:
        partial, partial_segment = None, None  # a complete segment of that name is preferred
    present = set(segments) | ({partial_segment} if partial_segment else set())
    on_base_timeline = [segment for segment in present if segment.timeline == timeline]
    gaps = find_gaps([*on_base_timeline, stop] if on_base_timeline else [])
    if gaps:
        raise RecoveryRefused(f"the WAL after base backup {base.file} has a hole: "
                              f"{'; '.join(str(gap) for gap in gaps)}; nothing was written")
    if on_base_timeline and min(on_base_timeline).number > stop.number + 1:
        raise RecoveryRefused(f"the WAL after base backup {base.file} starts at {min(on_base_timeline).name}; "
                              f"{stop.next().name} is missing")
    ordered = [segments[segment] for segment in sorted(segments)]
    histories.sort(key=lambda record: record.name)
    return WalPlan(histories + ordered, partial, max(present) if present else None)


def base_start(base: Manifest) -> Segment:
    """The segment holding the base backup's start: the oldest WAL a recovery from it reads."""
    timeline = int(base.details["timeline"])
    return segment_of(parse_lsn(str(base.details["start_lsn"])), timeline)


def available_records(local: list[WalRecord], remote: list[WalRecord]) -> list[WalRecord]:
    """The local records and the offsite ones of names the local archive lacks (a local file is
    read before its copy)."""
    names = {record.name for record in local}
    return local + [record for record in remote if record.name not in names]


def recover_into_volume(client: docker.DockerClient, backup_dir: Path, base: Manifest, volume: str, image: str,
                        target: datetime | None, *, timeout: float = 3600,
                        labels: dict[str, str] | None = None, decryption: Decryption | None = None,
                        signing_key: bytes | None = None, offsite: OffsiteWal | None = None,
                        force: bool = False) -> RecoveryReport:
    """Unpack ``base`` into ``volume`` (created if missing; refused while a running container
    uses it, and when it is not empty unless ``force``, which empties it first), stage the WAL,
    recover to ``target`` (None: everything received) and promote; the server is stopped
    cleanly and the staged WAL removed. ``image``: a PostgreSQL image of the base's major
    version (also the helper that checks and, with ``force``, empties the volume). The caller
    holds the backup lock: the WAL is staged in a scratch directory of BACKUP_DIR, which a
    backup run would otherwise remove as a leftover.
    ``decryption`` (ENCRYPT_IDENTITY_FILE) reads an encrypted base and WAL; without it they are
    refused (IdentityMissing) before anything is written. With ``signing_key``
    (MANIFEST_SIGNING_KEY) a WAL record not signed with it counts as missing. ``offsite``: the S3
    copy, read for the base and the WAL files that are not in the local archive."""
    decryption = decryption or Decryption(None)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=RESTORE_SCRATCH_PREFIX, dir=backup_dir))
    try:
        job = _Recovery(client, backup_dir, scratch, decryption, signing_key, offsite)
        reached, plan, wiped = job.run(base, volume, image, target, started + timeout, labels or {}, force)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    target_text = target.isoformat(sep=" ") if target is not None else "latest"
    report = RecoveryReport(volume, base.file, target_text, reached, len(plan.records) + bool(plan.partial),
                            round(time.monotonic() - started, 3), fetched_offsite=job.fetched,
                            partial_staged=plan.partial is not None, volume_wiped=wiped)
    log.info("pitr_recovery_finished", volume=volume, reached=reached, seconds=report.seconds,
             fetched_offsite=len(job.fetched))
    return report


@dataclass
class _Recovery:
    """One recovery's sources: the local archive, the scratch directory, and the offsite copy."""

    client: docker.DockerClient
    backup_dir: Path
    scratch: Path
    decryption: Decryption
    signing_key: bytes | None
    offsite: OffsiteWal | None
    fetched: list[str] = field(default_factory=list)

    def run(self, base: Manifest, volume: str, image: str, target: datetime | None, deadline: float,
            labels: dict[str, str], force: bool) -> tuple[str, WalPlan, bool]:
        plan, base_path, wal_tar = self._checked_inputs(base)
        created = _ensure_volume(self.client, volume, labels)
        # As `restore-volume`: never into a volume a running container uses; a non-empty one only with force.
        _, wiped = prepare_target(self.client, image, volume, force)
        log.info("pitr_recovery_started", base=base.file, volume=volume, volume_created=created, volume_wiped=wiped,
                 target=target.isoformat(sep=" ") if target is not None else "latest",
                 newest_segment=plan.newest_segment.name if plan.newest_segment else None)
        container = self.client.containers.create(
            image, entrypoint=["sleep"], command=["infinity"], user="root", network_mode="none",
            name=f"pgbackup-pitr-{uuid.uuid4().hex[:8]}", labels={RECOVERY_LABEL: "1", **labels},
            volumes={volume: {"bind": PGDATA, "mode": "rw"}},
        )
        try:
            # Docker unpacks a gzip-compressed tar itself; an encrypted base is decrypted on its way.
            container.put_archive(PGDATA, iter(self.decryption.plaintext(_read(base_path), base)))
            with wal_tar.open("rb") as data:
                container.put_archive(PGDATA, data)
            container.start()
            _exec(container, ["sh", "-c", _PREPARE], "root")
            _verify_base(container, base)
            _exec(container, _pg_ctl_start(target), "postgres")
            reached = _wait_promoted(container, deadline)
            _stop_cleanly(container)
            _exec(container, ["rm", "-rf", f"{PGDATA}/{STAGED_WAL}", f"{PGDATA}/{RECOVERY_LOG}"], "root")
        finally:
            container.remove(force=True)
        return reached, plan, wiped

    def _checked_inputs(self, base: Manifest) -> tuple[WalPlan, Path, Path]:
        """The WAL plan, the base's checked file and the staged WAL's tar, every file read and
        checked: whatever is missing or damaged is refused before the volume is touched."""
        # The partial segment is copied before the records are read: a segment completed and archived
        # in between is then in the records, never missing between the records and the partial.
        partial = _copy_partial(self.backup_dir, self.scratch)
        # A record whose file is gone counts as missing locally: its S3 copy stands in.
        local = [record for record in read_records(self.backup_dir, self.signing_key)
                 if (wal_dir(self.backup_dir) / record.file).exists()]
        remote = self.offsite.records(base_start(base), {r.name for r in local}) if self.offsite else []
        plan = plan_wal(available_records(local, remote), partial, base)
        self.decryption.require(base)
        for record in plan.records:
            self.decryption.require(record)
        base_path = self._base_file(base)
        local_names = {record.name for record in local}
        try:
            wal_tar = _wal_tar(plan, self.scratch, lambda record: self._wal_bytes(record, record.name in local_names))
        except WalArchiveError as error:
            raise RecoveryRefused(f"{error}; nothing was written") from None
        return plan, base_path, wal_tar

    def _base_file(self, base: Manifest) -> Path:
        path = self.backup_dir / base.file
        if path.exists():
            check_sha256(path, base.sha256, base.size_bytes)
            return path
        if self.offsite is None:
            raise RecoveryRefused(f"base backup {base.file} is not in {self.backup_dir} (its manifest is) "
                                  "and S3 is not set up or could not be read (see offsite_wal_list_failed in the log)")
        self.fetched.append(base.file)
        return self.offsite.fetch_base(base, self.scratch)

    def _wal_bytes(self, record: WalRecord, local: bool) -> Iterator[bytes]:
        if local or self.offsite is None:
            return read_checked(self.backup_dir, record, self.decryption)
        path = self.offsite.fetch_wal(record, self.scratch)
        self.fetched.append(record.file)
        return _removed_after(read_checked_file(path, record, self.decryption), path)


def _copy_partial(backup_dir: Path, scratch: Path) -> Path | None:
    """A copy of the segment pg_receivewal is filling, if any (under its own name)."""
    partial = partial_segment(backup_dir)
    if partial is None:
        return None
    copy = scratch / partial.name
    try:
        shutil.copyfile(partial, copy)
    except FileNotFoundError:
        return None  # completed meanwhile: then it is in the spool or the archive as a complete segment
    return copy


def _ensure_volume(client: docker.DockerClient, volume: str, labels: dict[str, str]) -> bool:
    """Create ``volume`` with ``labels`` when missing; whether it was created."""
    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        client.volumes.create(volume, labels=labels)
        return True
    return False


def _wal_tar(plan: WalPlan, scratch: Path, content: Callable[[WalRecord], Iterable[bytes]]) -> Path:
    """The checked WAL as one tar of PGDATA/pgbackup_wal/, built in the scratch directory;
    ``content`` gives a record's WAL bytes (checked against the record as they are read)."""
    tar_path = scratch / "wal.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.addfile(_directory_entry(STAGED_WAL))
        for record in plan.records:
            _add_file(tar, f"{STAGED_WAL}/{record.name}", content(record), scratch)
        if plan.partial is not None:
            name = plan.partial.name.removesuffix(".partial")
            _add_file(tar, f"{STAGED_WAL}/{name}", _read(plan.partial), scratch)
    return tar_path


def _removed_after(blocks: Iterator[bytes], path: Path) -> Iterator[bytes]:
    """``blocks``, then ``path`` removed: a downloaded WAL file takes scratch space only while staged."""
    try:
        yield from blocks
    finally:
        path.unlink(missing_ok=True)


def _directory_entry(name: str) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.type, entry.mode = tarfile.DIRTYPE, 0o755
    return entry


def _add_file(tar: tarfile.TarFile, name: str, blocks: Iterable[bytes], scratch: Path) -> None:
    staged = scratch / "segment"
    with staged.open("wb") as out:
        for block in blocks:
            out.write(block)
    entry = tarfile.TarInfo(name)
    entry.size, entry.mode = staged.stat().st_size, 0o644
    with staged.open("rb") as data:
        tar.addfile(entry, data)


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as data:
        while block := data.read(1 << 20):
            yield block


def _pg_ctl_start(target: datetime | None) -> list[str]:
    settings = [f"restore_command='cp {PGDATA}/{STAGED_WAL}/%f %p'", "recovery_target_action=promote",
                "listen_addresses=''"]
    if target is not None:
        settings.append(f"recovery_target_time='{target.isoformat(sep=' ')}'")
    options = " ".join(f"-c {setting}" for setting in settings)
    return ["pg_ctl", "start", "-w", "-t", "600", "-D", PGDATA, "-l", f"{PGDATA}/{RECOVERY_LOG}", "-o", options]


def _wait_promoted(container: Container, deadline: float) -> str:
    """Poll until the server has left recovery; the time of the last transaction it replayed."""
    query = ["psql", "-X", "-At", "-d", "postgres", "-c",
             "SELECT pg_is_in_recovery(), coalesce(pg_last_xact_replay_timestamp()::text, '')"]
    while True:
        code, output = container.exec_run(query, user="postgres")
        text = output.decode(errors="replace").strip()
        if code == 0 and text.startswith("f|"):
            return text.split("|", 1)[1]
        if time.monotonic() > deadline:
            raise RecoveryFailed(f"recovery did not end in time; the server's log ends: {_log_tail(container)}")
        time.sleep(0.5)


def _stop_cleanly(container: Container) -> None:
    _exec(container, ["pg_ctl", "stop", "-m", "fast", "-w", "-t", "300", "-D", PGDATA], "postgres")
    state = _exec(container, ["sh", "-c", f'pg_controldata "{PGDATA}" | grep "cluster state"'], "postgres")
    if "shut down" not in state:
        raise RecoveryFailed(f"the recovered server did not shut down cleanly ({state.strip()})")


def _verify_base(container: Container, base: Manifest) -> None:
    """pg_verifybackup of the unpacked base before the server touches it: every file against the
    checksums of the backup's own backup_manifest, and the WAL from its start to its stop (the tar
    carries it, -X fetch) parsed. The staged WAL directory is not the backup's."""
    code, output = container.exec_run(["pg_verifybackup", "--quiet", f"--ignore={STAGED_WAL}", PGDATA],
                                      user="postgres")
    if code != 0:
        raise RecoveryFailed(f"base backup {base.file} failed pg_verifybackup after unpacking: "
                             f"{output.decode(errors='replace').strip()[-2000:]}")


def _exec(container: Container, argv: list[str], user: str) -> str:
    code, output = container.exec_run(argv, user=user)
    text = output.decode(errors="replace")
    if code != 0:
        raise RecoveryFailed(f"{argv[0]} in the recovery container failed ({code}): {text.strip()[-2000:]}; "
                             f"server log: {_log_tail(container)}")
    return text


def _log_tail(container: Container) -> str:
    code, output = container.exec_run(["tail", "-n", "20", f"{PGDATA}/{RECOVERY_LOG}"], user="root")
    return output.decode(errors="replace").strip() if code == 0 else "(no log)"
