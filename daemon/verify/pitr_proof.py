"""Proof that point-in-time recovery works, for ``pgbackup verify`` and the scheduled restore
test: the WAL archive has no hole from the oldest base backup's start on (every second since
then is reachable), and the newest base backup plus the WAL received recover, in a throwaway
volume that is removed afterwards, to a server that promotes and shuts down cleanly.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import docker
import docker.errors

from daemon.errors import Cancelled, PgBackupError
from daemon.identity import this_instance
from daemon.logs import get_logger
from daemon.manifest import Manifest, scan_manifests
from daemon.restore.selection import Selected
from daemon.settings import Settings
from daemon.sources.connect import docker_client
from daemon.sources.transport import stopped_on
from daemon.verify.throwaway import image_for
from daemon.wal.archive import WalRecord, read_records
from daemon.wal.base import KIND as BASE_KIND
from daemon.wal.recovery import RecoveryRefused, plan_wal, recover_into_volume

log = get_logger(__name__)

PITR_RESULT = "point-in-time recovery"  # what verify and the restore test call this result
PROOF_VOLUME_PREFIX = "pgbackup-pitr-proof-"
PROOF_LABEL = "org.pgbackup.pitr-proof"


@dataclass
class RecoveryProof:
    checks: list[str] = field(default_factory=list)
    error: str | None = None
    base: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def usable_bases(manifests: list[Manifest], now: datetime) -> list[Manifest]:
    """Base backups oldest first, leaving out any dated in the future (taken while the clock was wrong)."""
    bases = [m for m in manifests if m.kind == BASE_KIND and m.started_at <= now]
    return sorted(bases, key=lambda manifest: manifest.started_at)


def continuity_check(records: list[WalRecord], bases: list[Manifest]) -> str:
    """What the archive covers, said as a check; raises RecoveryRefused naming the first missing
    segment when the WAL after the oldest base backup has a hole (then no time after the hole is
    reachable from it), or PgBackupError when there is no base backup at all."""
    if not bases:
        raise PgBackupError("no base backup: point-in-time recovery has nothing to start from "
                            "(take one with `pgbackup backup base`, or wait for SCHEDULE_BASE)")
    plan = plan_wal(records, None, bases[0])
    newest = plan.newest_segment.name if plan.newest_segment else "the base's own WAL"
    return (f"WAL continuous from base backup {bases[0].file} (the oldest of {len(bases)}) to {newest}: "
            f"{len(plan.records)} archived files, no hole")


def prove_recovery(settings: Settings, now: datetime, *, recover: bool = True,
                   client: docker.DockerClient | None = None, labels: dict[str, str] | None = None,
                   cancel: threading.Event | None = None) -> RecoveryProof:
    """The continuity check, then (``recover``) a recovery of the newest base backup with every
    WAL received into a throwaway volume, removed afterwards. A set ``cancel`` (the daemon's
    stop) removes the recovery's container at once, which ends the recovery with an error."""
    started = time.monotonic()
    proof = RecoveryProof()
    try:
        instance = this_instance(settings, create=False)
        owned = [m for m in scan_manifests(settings.backup_dir, settings.signing_key).manifests
                 if instance.owns(m.instance)]
        bases = usable_bases(owned, now)
        proof.checks.append(continuity_check(read_records(settings.backup_dir, settings.signing_key), bases))
        if recover:
            newest = bases[-1]
            proof.base = newest.file
            proof.checks.append(_recover_throwaway(settings, newest, client, labels or {}, cancel))
    except Cancelled:
        raise
    except (RecoveryRefused, PgBackupError, docker.errors.DockerException) as error:
        proof.error = str(error)
    proof.seconds = time.monotonic() - started
    log.info("pitr_proof_finished", ok=proof.ok, error=proof.error, seconds=round(proof.seconds, 1))
    return proof


def _recover_throwaway(settings: Settings, base: Manifest, client: docker.DockerClient | None,
                       labels: dict[str, str], cancel: threading.Event | None) -> str:
    """The newest base and every WAL received, recovered into a new volume (the restore test's
    image: RESTORE_TEST_IMAGE, else postgres:<major>, else the database container's)."""
    client = client or docker_client(settings)
    image = image_for(settings, [Selected(base, settings.backup_dir / base.file)], client)
    run_id = uuid.uuid4().hex[:8]
    volume = f"{PROOF_VOLUME_PREFIX}{run_id}"
    labels = {PROOF_LABEL: run_id, **labels}
    try:
        with stopped_on(cancel, lambda: _remove_containers(client, run_id)):
            report = recover_into_volume(client, settings.backup_dir, base, volume, image, None, labels=labels,
                                         decryption=settings.decryption, signing_key=settings.signing_key)
    finally:
        _remove_volume(client, volume)
    if cancel is not None and cancel.is_set():
        raise Cancelled("the point-in-time recovery proof was stopped: the daemon is shutting down")
    return (f"recovered base backup {base.file} and {report.segments_staged} WAL files in a throwaway volume in "
            f"{report.seconds:.1f} s: promoted, last transaction replayed at {report.reached or 'unknown'}, "
            "shut down cleanly")


def _remove_containers(client: docker.DockerClient, run_id: str) -> None:
    for container in client.containers.list(all=True, filters={"label": f"{PROOF_LABEL}={run_id}"}):
        try:
            container.remove(force=True)
        except docker.errors.DockerException as error:
            log.warning("pitr_proof_container_left", container=container.name, error=str(error))


def _remove_volume(client: docker.DockerClient, volume: str) -> None:
    try:
        client.volumes.get(volume).remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.DockerException as error:
        log.warning("pitr_proof_volume_left", volume=volume, error=str(error))
