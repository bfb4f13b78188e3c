"""What a killed sidecar (SIGKILL after the stop grace, an OOM kill, a power loss) leaves behind,
removed once when the daemon starts.

A clean stop leaves nothing: every step removes its own leftovers on the way out. A kill runs no
such step, and four kinds of debris outlive it:

- incomplete S3 multipart uploads (their parts are billed for ever, and nothing lists them);
- restore-test containers, each holding a copy of production data;
- ``pgbackup_restore_*`` staging databases on the database server;
- ``/tmp/pgbackup-restore.*`` archive copies in the database container.

Each sweep only takes what is provably ours and provably abandoned:

- uploads: directly under this install's S3_PREFIX, initiated more than MULTIPART_MIN_AGE ago,
  and only while this process holds the backup lock (so no backup or backlog upload of this
  install is running). The age spares an upload of another install that wrongly shares the
  prefix; a younger leftover is aborted at the next start.
- containers: labelled as restore-test containers of this install (``throwaway.OWNER_LABEL``)
  whose creating process is gone (``throwaway.CREATOR_LABEL``): a `pgbackup verify` running in
  another container keeps its container. Containers made before the labels existed are named in
  the log, never removed: whose they are cannot be told.
- staging databases and archive copies: only the exact names the restore code makes
  (``restore.database.STAGING_NAME``, ``restore.feed.SCRATCH_GLOB``), only under the backup lock,
  which every restore holds while it runs.

A sweep never fails the start: an error is logged and counted in
``pgbackup_debris_sweep_errors_total{what}``; what is removed is logged and counted in
``pgbackup_debris_removed_total{what}``. Running it twice removes nothing the second time.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import docker
import docker.errors

from daemon.errors import LockBusy
from daemon.identity import this_instance
from daemon.lock import backup_lock
from daemon.logs import get_logger
from daemon.monitoring.metrics import Metrics
from daemon.restore.database import STAGING_NAME
from daemon.restore.feed import SCRATCH_GLOB
from daemon.restore.target import TargetServer
from daemon.settings import Settings
from daemon.sources.connect import connect, docker_client
from daemon.sources.docker_exec import DockerExecTransport
from daemon.storage.s3 import Bucket
from daemon.storage.s3_claim import check_claim
from daemon.verify import throwaway

log = get_logger(__name__)

MULTIPART_MIN_AGE = timedelta(hours=1)
# Removes each matching directory and prints its path; a glob that matches nothing stays literal.
_REMOVE_SCRATCH = 'for d in $1; do if [ -d "$d" ]; then rm -rf -- "$d" && echo "$d"; fi; done; true'


@dataclass
class DebrisReport:
    removed: dict[str, list[str]] = field(default_factory=dict)  # what -> names removed
    errors: dict[str, str] = field(default_factory=dict)  # what -> why its sweep failed
    deferred: bool = False  # the backup lock was busy: the sweeps that need it were skipped


# --- which leftovers are debris (pure) ------------------------------------------------------

def abandoned_uploads(uploads: Iterable[Mapping], prefix: str, now: datetime) -> list[Mapping]:
    """The uploads (as ListMultipartUploads gives them) directly under ``prefix`` that were
    initiated more than MULTIPART_MIN_AGE before ``now``."""
    return [
        upload for upload in uploads
        if upload["Key"].startswith(prefix) and "/" not in upload["Key"][len(prefix):]
        and upload["Initiated"] <= now - MULTIPART_MIN_AGE
    ]


def abandoned_throwaways(labelled: Iterable[Mapping[str, str]], owner: str,
                         creator_alive: Callable[[str], bool]) -> list[Mapping[str, str]]:
    """Of the restore-test containers' labels, those of this install whose creator is gone."""
    return [
        labels for labels in labelled
        if labels.get(throwaway.OWNER_LABEL) == owner and labels.get(throwaway.CREATOR_LABEL)
        and not creator_alive(labels[throwaway.CREATOR_LABEL])
    ]


def staging_databases(names: Iterable[str]) -> list[str]:
    return [name for name in names if STAGING_NAME.fullmatch(name)]


# --- the sweeps ---------------------------------------------------------------------------

def sweep_debris(settings: Settings, metrics: Metrics, client: docker.DockerClient | None = None,
                 now: datetime | None = None) -> DebrisReport:
    """Every sweep, each on its own: one that fails is logged and counted, the others still run."""
    report = DebrisReport()
    now = now or datetime.now(settings.timezone)
    if settings.uses_docker_exec or settings.trigger(settings.schedule_restore_test) is not None:
        _attempt(report, metrics, "restore_test_container", lambda: _remove_throwaways(settings, client))
    holder = {"run_id": uuid.uuid4().hex[:12], "kind": "debris_sweep", "since": now.isoformat()}
    try:
        with backup_lock(settings.backup_dir, holder, wait=False):
            if settings.offsite_enabled:
                _attempt(report, metrics, "multipart_upload", lambda: _abort_uploads(settings, now))
            _attempt(report, metrics, "staging_database", lambda: _drop_staging_databases(settings, client))
            if settings.uses_docker_exec:
                _attempt(report, metrics, "restore_copy", lambda: _remove_scratch_directories(settings, client))
    except LockBusy as busy:
        report.deferred = True
        log.info("debris_sweep_deferred", reason=str(busy))
    except OSError as error:  # BACKUP_DIR unusable: reported by the start-up check
        report.deferred = True
        log.warning("debris_sweep_deferred", reason=str(error))
    log.info("debris_sweep_finished", removed=report.removed, errors=report.errors, deferred=report.deferred)
    return report


def _attempt(report: DebrisReport, metrics: Metrics, what: str, sweep: Callable[[], list[str]]) -> None:
    try:
        removed = sweep()
    except Exception as error:  # a sweep never fails the start
        log.error("debris_sweep_failed", what=what, error=str(error))
        metrics.debris_sweep_errors.labels(what).inc()
        report.errors[what] = str(error)
        return
    for name in removed:
        log.warning("debris_removed", what=what, name=name)
    if removed:
        metrics.debris_removed.labels(what).inc(len(removed))
        report.removed[what] = removed


def _abort_uploads(settings: Settings, now: datetime) -> list[str]:
    bucket = Bucket.from_settings(settings)
    # Another install's prefix (storage/s3_claim.py): its uploads are its own, never aborted here.
    check_claim(bucket, this_instance(settings, create=False))
    pages = bucket.client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket.name, Prefix=bucket.prefix)
    uploads = [upload for page in pages for upload in page.get("Uploads", [])]
    aborted = []
    for upload in abandoned_uploads(uploads, bucket.prefix, now):
        bucket.client.abort_multipart_upload(Bucket=bucket.name, Key=upload["Key"], UploadId=upload["UploadId"])
        aborted.append(f"{upload['Key']} (initiated {upload['Initiated'].isoformat()})")
    return aborted


def _remove_throwaways(settings: Settings, client: docker.DockerClient | None) -> list[str]:
    client = client or docker_client(settings)
    containers = client.containers.list(all=True, filters={"label": f"{throwaway.LABEL}=1"})
    unowned = [c.name for c in containers if throwaway.OWNER_LABEL not in c.labels]
    if unowned:
        log.warning("restore_test_containers_unowned", containers=unowned,
                    hint="made by an older version, so whose they are is unknown: remove them by hand if no "
                    "restore test or verify is running (docker rm -f -v NAME)")
    abandoned = abandoned_throwaways([c.labels for c in containers], throwaway.install_owner(settings),
                                     lambda creator: _creator_alive(creator, client))
    removed = []
    for container in containers:
        if container.labels in abandoned:
            container.remove(force=True, v=True)
            removed.append(container.name)
    return removed


def _creator_alive(creator: str, client: docker.DockerClient) -> bool:
    """Whether the process that made a throwaway container may still run: a process of this
    container or host (same pid namespace) that exists, or another container that is running.
    Unknown counts as alive."""
    host, _, pid = creator.rpartition("/")
    if host == throwaway.this_host():
        return not pid.isdigit() or _pid_exists(int(pid))
    try:
        return client.containers.get(host).status in ("running", "restarting", "paused")
    except docker.errors.NotFound:
        return False
    except docker.errors.DockerException:
        return True


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_staging_databases(settings: Settings, client: docker.DockerClient | None) -> list[str]:
    server = TargetServer(connect(settings, client).server)
    dropped = []
    for name in staging_databases(server.all_databases()):
        problem = server.drop_staging(name)
        if problem is not None:
            raise RuntimeError(f"staging database {name!r} could not be dropped: {problem}")
        dropped.append(name)
    return dropped


def _remove_scratch_directories(settings: Settings, client: docker.DockerClient | None) -> list[str]:
    """In the database container, where restores put their archive copies (whatever connection
    the dumps use)."""
    transport = DockerExecTransport(client or docker_client(settings), settings.postgres_container)
    output = transport.run(["sh", "-c", _REMOVE_SCRATCH, "pgbackup-sweep", SCRATCH_GLOB])
    return [line for line in output.decode().splitlines() if line.strip()]
