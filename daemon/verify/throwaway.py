"""The throwaway PostgreSQL server and restores into it, for the restore test and `pgbackup verify`.

The newest full backup and each database's newest dump (``latest_backups``) are restored into
one labelled container of the backups' major version, which is removed afterwards however the
restore ends (``throwaway_server``).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from io import StringIO
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from daemon.clock import is_future
from daemon.errors import Cancelled, PgBackupError
from daemon.identity import split_by_owner, this_instance
from daemon.logs import get_logger
from daemon.manifest import scan_manifests
from daemon.restore.base import SYSTEM_DATABASES
from daemon.restore.restorer import Restorer
from daemon.restore.selection import FULL_KINDS, Selected
from daemon.settings import Settings
from daemon.sources.connect import docker_client
from daemon.sources.docker_exec import DockerExecTransport
from daemon.sources.postgres import ConnectionOptions, PostgresServer
from daemon.sources.transport import stopped_on

log = get_logger(__name__)

LABEL = "pgbackup.restore-test"
RUN_LABEL = "pgbackup.restore-test.run"
# Who made the container, so that a sidecar killed meanwhile can have its leftovers removed at the
# next start (housekeeping/debris.py) without touching those of a running `pgbackup verify` or of
# another install on the same engine.
OWNER_LABEL = "pgbackup.restore-test.owner"  # install_owner(settings)
CREATOR_LABEL = "pgbackup.restore-test.creator"  # this_process(): "<hostname>/<pid>"
READY_TIMEOUT_SECONDS = 120
# mountinfo's root and mount point of /etc/hostname. Only that line: on a Docker host, mountinfo
# also lists the mounts of every running container (their shm), which name other containers.
_HOSTNAME_MOUNT = re.compile(r"^\S+ \S+ \S+ \S*/containers/([0-9a-f]{64})/hostname /etc/hostname ", re.MULTILINE)
CANCELLED = "restore test cancelled: a stop was requested"
SUPERUSER = "postgres"


class RestoreTestError(PgBackupError):
    """The throwaway server could not be started or reached."""


@dataclass
class TargetResult:
    target: str  # "all" or the database
    file: str
    ok: bool
    detail: str
    seconds: float = 0.0


def latest_backups(settings: Settings, now: datetime) -> list[Selected]:
    """The newest full backup and the newest dump of each database, with their manifests.
    Backups dated in the future (a clock that was wrong) and other installs' backups are skipped."""
    newest: dict[str, Selected] = {}
    own, _ = split_by_owner(scan_manifests(settings.backup_dir, settings.signing_key).manifests, this_instance(settings, create=False))
    for manifest in own:  # newest first
        if is_future(manifest.started_at, now):
            log.warning("future_dated_backup_skipped", file=manifest.file, kind=manifest.kind,
                        target=manifest.target, started_at=manifest.started_at.isoformat())
            continue
        key = "all" if manifest.kind in FULL_KINDS else manifest.target if manifest.kind == "database" else None
        if key is not None and key not in newest:
            newest[key] = Selected(manifest, settings.backup_dir / manifest.file)
    return sorted(newest.values(), key=lambda selected: (not selected.is_full, selected.manifest.target))


def image_for(settings: Settings, selections: list[Selected], client: docker.DockerClient | None = None) -> str:
    """RESTORE_TEST_IMAGE; else postgres:<major> if present here; else the database container's
    own image (it runs the server that wrote the backups, and needs no registry); else
    postgres:<major>, pulled."""
    if settings.restore_test_image:
        return settings.restore_test_image
    majors = [int(s.manifest.server_version.split(".")[0]) for s in selections if s.manifest.server_version]
    official = f"postgres:{max(majors) if majors else 'latest'}"
    if client is None or not settings.postgres_container:
        return official
    try:
        client.images.get(official)
        return official
    except docker.errors.DockerException:
        pass
    try:
        container = client.containers.get(settings.postgres_container)
    except docker.errors.DockerException:
        return official
    return container.attrs.get("Config", {}).get("Image") or official


@contextmanager
def throwaway_server(client: docker.DockerClient, image: str, labels: dict[str, str] | None = None,
                     cancel: threading.Event | None = None) -> Iterator[PostgresServer]:
    """A fresh PostgreSQL container, removed on leaving the block however it is left, and at once
    when ``cancel`` is set (whatever runs in it then fails: it is a throwaway)."""
    _ensure_image(client, image)
    run_id = uuid.uuid4().hex[:12]
    name = f"pgbackup-restore-test-{run_id}"
    container = None
    try:
        container = client.containers.run(
            image, name=name, detach=True,
            environment={"POSTGRES_USER": SUPERUSER, "POSTGRES_PASSWORD": secrets.token_urlsafe(24)},
            labels={LABEL: "1", RUN_LABEL: run_id, **(labels or {})},
        )
        log.info("restore_test_container_started", container=name, image=image)
        with stopped_on(cancel, lambda: _remove(container)):
            _wait_ready(container)
            yield PostgresServer(DockerExecTransport(client, name), ConnectionOptions(user=SUPERUSER))
    finally:
        if container is not None:
            _remove(container)


def _remove(container: Container) -> None:
    try:
        container.remove(force=True, v=True)
        log.info("restore_test_container_removed", container=container.name)
    except docker.errors.NotFound:
        pass
    except docker.errors.DockerException as error:
        log.error("restore_test_container_left", container=container.name, error=str(error))


def _ensure_image(client: docker.DockerClient, image: str) -> None:
    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(image)
    except docker.errors.DockerException as error:
        raise RestoreTestError(
            f"the restore test image {image!r} is not present and cannot be pulled ({error}); "
            "set RESTORE_TEST_IMAGE to a PostgreSQL image of the server's major version"
        ) from None


def _wait_ready(container: Container) -> None:
    """Ready once it answers over TCP: the image's init phase listens on the socket only."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    probe = ["pg_isready", "-q", "-h", "127.0.0.1", "-U", SUPERUSER]
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            raise RestoreTestError(f"the restore test container stopped while starting: "
                                   f"{container.logs(tail=10).decode(errors='replace')}")
        if container.exec_run(probe).exit_code == 0 and container.exec_run(
                ["psql", "-X", "-At", "-U", SUPERUSER, "-d", "postgres", "-c", "SELECT 1"]).exit_code == 0:
            return
        if time.monotonic() > deadline:
            raise RestoreTestError(f"the restore test container was not ready after {READY_TIMEOUT_SECONDS} s")
        time.sleep(0.5)


def install_owner(settings: Settings) -> str:
    """The install a throwaway container belongs to: its database container (names are unique on
    an engine), or the database server's address."""
    return settings.postgres_container or f"{settings.postgres_host}:{settings.postgres_port}"


def this_process() -> str:
    """The process that creates a throwaway container: ``this_host()`` and the process id."""
    return f"{this_host()}/{os.getpid()}"


def this_host() -> str:
    """The id of the container this process runs in (Docker mounts /etc/hostname from its
    directory, whatever `hostname:` says), else the host name."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        mountinfo = ""
    return container_id(mountinfo) or socket.gethostname()


def container_id(mountinfo: str) -> str | None:
    """The id of the container whose /etc/hostname is mounted, from /proc/self/mountinfo's text."""
    found = _HOSTNAME_MOUNT.search(mountinfo)
    return found.group(1) if found else None


def restore_into_throwaway(
    settings: Settings, selections: list[Selected], client: docker.DockerClient | None = None,
    labels: dict[str, str] | None = None, cancel: threading.Event | None = None,
) -> list[TargetResult]:
    """Restore each selection into one throwaway server: the full backup first (it brings the
    roles the database dumps refer to), then each database dump over its database."""
    client = client or docker_client(settings)
    results = []
    labels = {OWNER_LABEL: install_owner(settings), CREATOR_LABEL: this_process(), **(labels or {})}
    try:
        with throwaway_server(client, image_for(settings, selections, client), labels, cancel) as server:
            restorer = Restorer(server, jobs=settings.restore_jobs, yes=True, progress_stream=StringIO(),
                                progress_interval=settings.progress_interval_seconds, temp_root=settings.backup_dir,
                                confirm=_throwaway_needs_no_confirmation, decryption=settings.decryption)
            fulls = [selected for selected in selections if selected.is_full]
            _make_tablespace_directories(restorer, fulls[0] if fulls else _newest_full(settings))
            if not fulls:
                _roles_first(settings, restorer)
            for selected in selections:
                _raise_if_cancelled(cancel)
                results.append(_restore_one(restorer, selected))
    except Exception as error:
        if cancel is not None and cancel.is_set():  # the failure is the container removed under it
            raise Cancelled(CANCELLED) from error
        raise
    _raise_if_cancelled(cancel)  # a restore that failed because its container went is no result
    return results


def _raise_if_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(CANCELLED)


def _throwaway_needs_no_confirmation(steps: list[str], yes: bool) -> None:
    """Everything dropped here lives in the throwaway container."""


def _newest_full(settings: Settings) -> Selected | None:
    selections = latest_backups(settings, datetime.now(settings.timezone))
    return next((selected for selected in selections if selected.is_full), None)


def _roles_first(settings: Settings, restorer: Restorer) -> None:
    """Database dumps name their owners and grantees: take the roles from the newest full backup."""
    full = _newest_full(settings)
    if full is not None:
        try:
            restorer.globals_only(full)
        except PgBackupError as error:
            log.warning("restore_test_roles_missing", file=full.manifest.file, error=str(error))


def _make_tablespace_directories(restorer: Restorer, full: Selected | None) -> None:
    """The throwaway server has none of the directories the backup's tablespaces were in, and
    CREATE TABLESPACE needs them: create them there, owned by postgres."""
    if full is None:
        return
    try:
        locations = restorer.tablespace_locations(full)
        if locations:
            restorer.server.transport.run(["sh", "-c", _MAKE_DIRECTORIES, "pgbackup-tablespaces", *locations])
    except PgBackupError as error:
        log.warning("restore_test_tablespaces_not_prepared", file=full.manifest.file, error=str(error))


_MAKE_DIRECTORIES = 'for dir in "$@"; do mkdir -p -- "$dir" && chown postgres:postgres -- "$dir"; done'


def _restore_one(restorer: Restorer, selected: Selected) -> TargetResult:
    manifest = selected.manifest
    target = "all" if selected.is_full else manifest.target
    started = time.monotonic()
    try:
        if selected.is_full:
            report = restorer.full(selected, force=True)
        else:
            # The maintenance database itself is never replaced: it is restored beside it.
            into = f"{manifest.target}_restore_test" if manifest.target in SYSTEM_DATABASES else None
            report = restorer.database(selected, manifest.target, into)
    except PgBackupError as error:
        log.error("restore_test_target_failed", target=target, file=manifest.file, error=str(error))
        return TargetResult(target, manifest.file, False, str(error), time.monotonic() - started)
    log.info("restore_test_target_passed", target=target, file=manifest.file, seconds=round(report.seconds, 1))
    return TargetResult(target, manifest.file, True, report.summary(), time.monotonic() - started)
