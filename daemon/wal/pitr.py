"""`pgbackup restore point-in-time`'s entry point: the target read, the base backup chosen,
what cannot be reached refused with the reason before anything is written, then
``recovery.recover_into_volume``."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import docker
import docker.errors

from daemon.errors import PgBackupError
from daemon.identity import this_instance
from daemon.manifest import Manifest, scan_manifests
from daemon.settings import Settings
from daemon.sources.connect import docker_client
from daemon.wal.archive import partial_segment, read_records
from daemon.wal.base import KIND
from daemon.wal.recovery import RecoveryRefused, RecoveryReport, recover_into_volume


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


def newest_wal_time(settings: Settings) -> datetime | None:
    """When the newest WAL arrived: the partial segment's last write, else the newest archiving."""
    partial = partial_segment(settings.backup_dir)
    if partial is not None:
        return datetime.fromtimestamp(partial.stat().st_mtime, settings.timezone)
    times = [datetime.fromisoformat(record.archived_at)
             for record in read_records(settings.backup_dir, settings.signing_key)]
    return max(times) if times else None


def restore_point_in_time(settings: Settings, target: datetime | None, volume: str, image: str | None = None,
                          client: docker.DockerClient | None = None) -> RecoveryReport:
    """Recover into ``volume`` to ``target`` (None: everything received). Hold the backup lock."""
    instance = this_instance(settings, create=False)
    # With MANIFEST_SIGNING_KEY an unsigned or badly signed manifest is foreign: never restored.
    scanned = scan_manifests(settings.backup_dir, settings.signing_key).manifests
    manifests = [m for m in scanned if instance.owns(m.instance)]
    base = choose_base(manifests, target)
    check_received(target, newest_wal_time(settings))
    client = client or docker_client(settings)
    return recover_into_volume(client, settings.backup_dir, base, volume, image or _image(settings, client, base),
                               target, decryption=settings.decryption, signing_key=settings.signing_key)


def _image(settings: Settings, client: docker.DockerClient, base: Manifest) -> str:
    """POSTGRES_CONTAINER's image, else postgres:<the base's major version> (pulled if missing)."""
    if settings.postgres_container:
        try:
            return client.containers.get(settings.postgres_container).attrs["Image"]
        except docker.errors.NotFound:
            pass
    return f"postgres:{base.server_version.split('.')[0]}"
