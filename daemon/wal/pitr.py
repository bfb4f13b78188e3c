"""`pgbackup restore point-in-time`'s entry point: the target read, the base backup chosen
(from the local manifests and, with S3 set up, the offsite copies), what cannot be reached
refused with the reason before anything is written, then ``recovery.recover_into_volume``;
and the report's comparison of the time reached with the target."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import docker
import docker.errors

from daemon.errors import PgBackupError
from daemon.identity import this_instance
from daemon.logs import get_logger
from daemon.manifest import Manifest
from daemon.restore.fetch import candidates
from daemon.restore.selection import owned_candidates
from daemon.settings import Settings
from daemon.sources.connect import docker_client
from daemon.wal.archive import WalRecord, partial_segment, read_records
from daemon.wal.base import KIND
from daemon.wal.recovery import RecoveryRefused, RecoveryReport, base_start, recover_into_volume

if TYPE_CHECKING:  # boto3 is imported only when S3 is set up (about 0.4 s)
    from daemon.wal.remote import OffsiteWal

log = get_logger(__name__)


def parse_target(text: str, zone: ZoneInfo) -> datetime:
    """'2026-12-05 14:54:59' in TZ; a time with an offset ('…+01:00') is taken as it is."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PgBackupError(f"--to {text!r}: use 'YYYY-mm-dd HH:MM:SS' (in TZ={zone.key}) or add an offset, "
                            "e.g. '2026-12-05 14:54:59+01:00'") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def choose_base(manifests: list[Manifest], target: datetime | None) -> Manifest:
    """The newest base backup that finished before ``target`` (None: the newest of all): a base
    is consistent only from its stop position on, so it must have finished by the target."""
    bases = sorted((m for m in manifests if m.kind == KIND), key=lambda m: m.finished_at)
    if not bases:
        raise RecoveryRefused("there is no base backup: take one with `pgbackup backup base`")
    if target is None:
        return bases[-1]
    usable = [m for m in bases if m.finished_at <= target]
    if not usable:
        raise RecoveryRefused(f"{target.isoformat(sep=' ')} is before the oldest base backup "
                              f"({bases[0].file}, finished {bases[0].finished_at.isoformat(sep=' ')})")
    return usable[-1]


def check_received(target: datetime | None, newest_wal: datetime | None) -> None:
    """Refuse a target after the newest WAL received: recovery would stop short of it."""
    if target is not None and (newest_wal is None or target > newest_wal):
        received = newest_wal.isoformat(sep=" ") if newest_wal else "none"
        raise RecoveryRefused(f"{target.isoformat(sep=' ')} is after the newest WAL received ({received}); "
                              "use --latest for everything received")


def newest_wal_time(settings: Settings, offsite_records: list[WalRecord]) -> datetime | None:
    """When the newest WAL arrived: the partial segment's last write, else the newest archiving
    of a local record or an offsite one."""
    partial = partial_segment(settings.backup_dir)
    if partial is not None:
        return datetime.fromtimestamp(partial.stat().st_mtime, settings.timezone)
    records = read_records(settings.backup_dir, settings.signing_key) + offsite_records
    times = [datetime.fromisoformat(record.archived_at) for record in records]
    return max(times) if times else None


def describe_reached(reached: str, target: datetime | None) -> str:
    """The time of the last transaction replayed (PostgreSQL's text) against the target: how far
    before it recovery stopped, or that it is everything received."""
    if not reached:
        return "no transaction was replayed after the base backup (the time reached is the base's end)"
    moment = datetime.fromisoformat(reached)
    if target is None:
        return f"the last transaction replayed committed at {moment.isoformat(sep=' ')} (everything received)"
    gap = (target - moment).total_seconds()
    relation = f"{gap:.3f} s before the target" if gap >= 0 else f"{-gap:.3f} s AFTER the target"
    return (f"the last transaction replayed committed at {moment.isoformat(sep=' ')}, {relation} "
            f"{target.isoformat(sep=' ')}; every later commit was left out")


def restore_point_in_time(settings: Settings, target: datetime | None, volume: str, image: str | None = None,
                          client: docker.DockerClient | None = None, *, force: bool = False,
                          instance_name: str | None = None) -> RecoveryReport:
    """Recover into ``volume`` to ``target`` (None: everything received), the base backup and WAL
    from BACKUP_DIR or, where the local copy is gone, from S3. ``force``: empty a volume that
    holds data first (never one a running container uses). ``instance_name``: choose among
    that install's base backups (a new host after the old one was lost). Hold the backup lock."""
    instance = this_instance(settings, create=False)
    # With MANIFEST_SIGNING_KEY an unsigned or badly signed manifest is foreign (here and in S3).
    manifests, _ = owned_candidates(candidates(settings), instance, instance_name)
    base = choose_base(manifests, target)
    offsite = offsite_wal(settings)
    offsite_records = _offsite_records(offsite, base, settings)
    if offsite_records is None:
        offsite = None
    check_received(target, newest_wal_time(settings, offsite_records or []))
    client = client or docker_client(settings)
    return recover_into_volume(client, settings.backup_dir, base, volume, image or _image(settings, client, base),
                               target, decryption=settings.decryption, signing_key=settings.signing_key,
                               offsite=offsite, force=force)


def offsite_wal(settings: Settings) -> OffsiteWal | None:
    """The S3 copy of the WAL archive and base backups, when offsite copies are set up."""
    if not settings.offsite_enabled:
        return None
    from daemon.storage.s3 import Bucket  # boto3's import time only when S3 is set up
    from daemon.wal.remote import OffsiteWal

    return OffsiteWal(Bucket.from_settings(settings), settings.signing_key)


def _offsite_records(offsite: OffsiteWal | None, base: Manifest, settings: Settings) -> list[WalRecord] | None:
    """The offsite records a recovery from ``base`` can use that the local archive lacks; None
    when S3 cannot be read (the recovery then uses the local copies alone, and says what is missing)."""
    if offsite is None:
        return []
    from daemon.storage.s3 import S3_ERRORS

    local = {record.name for record in read_records(settings.backup_dir, settings.signing_key)}
    try:
        return offsite.records(base_start(base), local)
    except S3_ERRORS as error:
        log.warning("offsite_wal_list_failed", error=type(error).__name__)
        return None


def _image(settings: Settings, client: docker.DockerClient, base: Manifest) -> str:
    """POSTGRES_CONTAINER's image, else postgres:<the base's major version> (pulled if missing)."""
    if settings.postgres_container:
        try:
            return client.containers.get(settings.postgres_container).attrs["Image"]
        except docker.errors.NotFound:
            pass
    return f"postgres:{base.server_version.split('.')[0]}"
