"""Which containers a snapshot stops, the record of the stopped ones, and stopping and
starting them again.

The rule (see README, "Volume snapshots"): a snapshot may stop only the container named in
POSTGRES_CONTAINER, and only when it is running and mounts the volume. Any other running
container that mounts the volume is one the user did not name: the snapshot is refused
(stopping it would touch an unnamed container; copying around it would not be consistent).
No running user at all: the volume is copied as it is, nothing is stopped or started.

Before a container is stopped its id goes into BACKUP_DIR/.pgbackup-volume-stopped.json;
the record is removed once every container on it runs again. It says when it was written and
by which snapshot. A daemon that died in between (SIGKILL, host crash) finds the record on
start-up and starts those containers, unless the record is stale (``restart_policy``): then
they are left stopped and reported. A container on the record that runs already (started by
hand) or is gone needs nothing, and the record is cleared.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from daemon.errors import PgBackupError
from daemon.logs import get_logger
from daemon.storage.local import replace_file_atomically
from daemon.volumes.restart_policy import is_stale, parse_time

log = get_logger(__name__)

STATE_FILE = ".pgbackup-volume-stopped.json"
READY_POLL_SECONDS = 0.5


class VolumeError(PgBackupError):
    """A volume snapshot, restore or clone cannot be done as asked."""


class VolumeInUse(VolumeError):
    """Running containers use the volume and the sidecar may not stop them."""


@dataclass(frozen=True)
class ContainerRef:
    id: str
    name: str

    def __str__(self) -> str:
        return self.name


def select_containers_to_stop(
    volume: str, running_users: Sequence[ContainerRef], named: ContainerRef | None
) -> list[ContainerRef]:
    """The containers a stop-mode snapshot of ``volume`` stops: [] or [the named container].

    ``running_users`` are the running containers that mount the volume, ``named`` the
    container POSTGRES_CONTAINER names (None when unset or absent). Raises VolumeInUse
    when a running user of the volume is not the named container.
    """
    others = [ref for ref in running_users if named is None or ref.id != named.id]
    if others:
        names = ", ".join(sorted(ref.name for ref in others))
        hint = (
            f"the sidecar stops only POSTGRES_CONTAINER ({named.name})"
            if named is not None
            else "POSTGRES_CONTAINER is not set (or no such container), so the sidecar stops nothing"
        )
        raise VolumeInUse(
            f"volume {volume!r} is in use by running container(s) not named in POSTGRES_CONTAINER: {names}; "
            f"{hint}. A copy taken while they run would not be consistent: stop them first, or set "
            "POSTGRES_CONTAINER to the database container that uses the volume"
        )
    return [ref for ref in running_users if named is not None and ref.id == named.id]


# --- the record of stopped containers ---------------------------------------------------------


@dataclass
class StoppedRecord:
    volume: str
    stopped_at: str  # ISO time the record was written, right before the first stop
    containers: list[ContainerRef] = field(default_factory=list)
    snapshot: str = ""  # the artifact file the snapshot was writing ("" in records of older versions)
    run_id: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StoppedRecord:
        data = json.loads(text)
        refs = [ContainerRef(str(item["id"]), str(item["name"])) for item in data.get("containers", [])]
        return cls(volume=str(data["volume"]), stopped_at=str(data["stopped_at"]), containers=refs,
                   snapshot=str(data.get("snapshot") or ""), run_id=str(data.get("run_id") or ""))

    def describe(self) -> str:
        """'volume snapshot postgres_volume_….tar.gz at 2026-…' for messages."""
        by = f"volume snapshot {self.snapshot}" if self.snapshot else f"a snapshot of volume {self.volume!r}"
        return f"{by} at {self.stopped_at}"


def state_path(backup_dir: Path) -> Path:
    return backup_dir / STATE_FILE


def read_record(backup_dir: Path) -> StoppedRecord | None:
    path = state_path(backup_dir)
    try:
        return StoppedRecord.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise VolumeError(
            f"{path} is unreadable ({error}); it lists containers a volume snapshot stopped. "
            "Start them by hand (docker start NAME), then delete the file"
        ) from None


def write_record(backup_dir: Path, record: StoppedRecord) -> None:
    replace_file_atomically(state_path(backup_dir), record.to_json().encode("utf-8"))


def clear_record(backup_dir: Path) -> None:
    state_path(backup_dir).unlink(missing_ok=True)


# --- Docker ---------------------------------------------------------------------------------------


def ref_of(container: Container) -> ContainerRef:
    return ContainerRef(container.id, container.name)


def mounts_volume(container: Container, volume: str) -> bool:
    return any(
        mount.get("Type") == "volume" and mount.get("Name") == volume
        for mount in container.attrs.get("Mounts") or ()
    )


def running_users(client: docker.DockerClient, volume: str) -> list[ContainerRef]:
    """Running (or paused) containers that mount ``volume``."""
    try:
        candidates = client.containers.list(filters={"volume": volume})
    except docker.errors.DockerException as error:
        raise VolumeError(f"cannot list the containers that use volume {volume!r}: {error}") from None
    return [ref_of(container) for container in candidates if mounts_volume(container, volume)]


def named_container(client: docker.DockerClient, name: str | None) -> ContainerRef | None:
    if not name:
        return None
    try:
        return ref_of(client.containers.get(name))
    except docker.errors.NotFound:
        return None
    except docker.errors.DockerException as error:
        raise VolumeError(f"cannot inspect container {name!r}: {error}") from None


def volume_exists(client: docker.DockerClient, volume: str) -> bool:
    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        return False
    except docker.errors.DockerException as error:
        raise VolumeError(f"cannot inspect volume {volume!r}: {error}") from None
    return True


@dataclass
class StopReport:
    """What stopping and starting again did: for the log, the manifest and the metric."""

    stopped: list[ContainerRef] = field(default_factory=list)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    restart_problems: list[str] = field(default_factory=list)
    downtime_seconds: float = 0.0

    @property
    def clean_shutdown(self) -> bool:
        return all(code == 0 for code in self.exit_codes.values())


class ContainerStopper:
    """Stops containers for a snapshot and always starts them again.

    ``stop`` records each container before stopping it; ``start_again`` starts them,
    waits until each runs (and, where ``ready_check`` says so, accepts connections),
    measures the downtime, and clears the record only when all of them run again.
    It never raises: problems are returned in the report so the caller's own error
    (a failed snapshot) is not hidden.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        backup_dir: Path,
        volume: str,
        stop_timeout: int,
        clock: Callable[[], datetime],
        ready_check: Callable[[Container], bool] | None = None,
        *,
        snapshot: str = "",
        run_id: str = "",
        cancel: threading.Event | None = None,
    ):
        self.client = client
        self.backup_dir = backup_dir
        self.volume = volume
        self.stop_timeout = stop_timeout
        self.clock = clock
        self.ready_check = ready_check
        self.snapshot = snapshot
        self.run_id = run_id
        self.cancel = cancel
        self.report = StopReport()
        self._stop_began: float | None = None

    def stop(self, refs: Sequence[ContainerRef]) -> None:
        record = StoppedRecord(self.volume, self.clock().isoformat(), snapshot=self.snapshot, run_id=self.run_id)
        for ref in refs:
            record.containers.append(ref)
            write_record(self.backup_dir, record)  # before the stop: a crash right after it is covered
            if self._stop_began is None:
                self._stop_began = time.monotonic()
            self.report.stopped.append(ref)
            log.info("container_stopping", container=ref.name, timeout_seconds=self.stop_timeout)
            try:
                container = self.client.containers.get(ref.id)
                container.stop(timeout=self.stop_timeout)
                container.reload()
            except docker.errors.DockerException as error:
                raise VolumeError(f"cannot stop container {ref.name!r}: {error}") from None
            state = container.attrs.get("State") or {}
            if state.get("Running"):
                raise VolumeError(f"container {ref.name!r} still runs after docker stop; not copying its volume")
            exit_code = state.get("ExitCode")
            self.report.exit_codes[ref.name] = exit_code
            if exit_code == 0:
                log.info("container_stopped", container=ref.name, exit_code=exit_code)
            else:
                log.warning(
                    "container_stopped_uncleanly", container=ref.name, exit_code=exit_code,
                    hint="killed after VOLUME_STOP_TIMEOUT_SECONDS? the copy then needs crash recovery on start",
                )

    def start_again(self) -> StopReport:
        self.report.restart_problems = start_containers(
            self.client, self.report.stopped, self.stop_timeout, self.ready_check, self.cancel
        )
        if self._stop_began is not None:
            self.report.downtime_seconds = round(time.monotonic() - self._stop_began, 3)
        if not self.report.restart_problems and not _shutting_down(self.cancel):
            clear_record(self.backup_dir)
        if self.report.stopped:
            log.info(
                "volume_downtime", containers=[ref.name for ref in self.report.stopped],
                downtime_seconds=self.report.downtime_seconds, restarted=not self.report.restart_problems,
            )
        return self.report


def start_containers(
    client: docker.DockerClient,
    refs: Sequence[ContainerRef],
    ready_timeout: float,
    ready_check: Callable[[Container], bool] | None = None,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Start each container (a running one is left alone); the problems, one line each.

    Once ``cancel`` is set (the daemon is stopping) a container that runs counts as started
    without waiting for it to accept connections: the stop grace (compose.yaml) has room for
    the stop and the start, not for a full ready-wait after them (docs/reliability.md). Its
    callers then keep the record, so the next daemon checks that it really runs."""
    problems = []
    for ref in refs:
        try:
            container = client.containers.get(ref.id)
        except docker.errors.NotFound:
            log.warning("stopped_container_gone", container=ref.name)
            continue  # removed meanwhile: nothing left to start
        except docker.errors.DockerException as error:
            problems.append(f"cannot inspect container {ref.name!r}: {error}")
            continue
        try:
            if container.status != "running":
                container.start()
            problem = _wait_running(container, ready_timeout, ready_check, cancel)
        except docker.errors.DockerException as error:
            problem = f"cannot start container {ref.name!r}: {error}"
        if problem:
            log.error("container_not_started", container=ref.name, error=problem)
            problems.append(problem)
        else:
            log.info("container_started", container=ref.name)
    return problems


def _wait_running(
    container: Container, timeout: float, ready_check: Callable[[Container], bool] | None,
    cancel: threading.Event | None = None,
) -> str | None:
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            code = (container.attrs.get("State") or {}).get("ExitCode")
            return f"container {container.name!r} exited (status {code}) right after it was started again"
        if container.status == "running" and (ready_check is None or _shutting_down(cancel) or ready_check(container)):
            return None
        if time.monotonic() > deadline:
            return f"container {container.name!r} was not ready {timeout:.0f} s after it was started again"
        time.sleep(READY_POLL_SECONDS)


def _shutting_down(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


def postgres_ready_check(user: str) -> Callable[[Container], bool]:
    """True once PostgreSQL in the container accepts connections on its socket (pg_isready)."""

    def ready(container: Container) -> bool:
        try:
            code, output = container.exec_run(["pg_isready", "-q", "-U", user])
        except docker.errors.DockerException:
            return False
        if code in (126, 127):
            # No pg_isready in that image: the container running is all we can check. The same
            # codes come from an exec into a container that is exiting (a server that fails at
            # start): that is not ready.
            return b"not found" in (output or b"")
        return code == 0

    return ready


@dataclass
class RecordedRestart:
    """What one look at the record of stopped containers did."""

    record: StoppedRecord | None = None
    started: list[ContainerRef] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # container name -> why it is not running
    stale: list[ContainerRef] = field(default_factory=list)  # left stopped: the record is too old

    @property
    def problems(self) -> list[str]:
        return [*self.failed.values(), *(stale_message(self.record, ref) for ref in self.stale)]


def stale_message(record: StoppedRecord, ref: ContainerRef) -> str:
    return (
        f"container {ref.name!r} was stopped by {record.describe()} and was not started again automatically: "
        "the record of stopped containers is stale (older than the bound in docs/reliability.md), and the "
        "container may have been stopped on purpose since. Start it (docker start "
        f"{ref.name}) if it should run, or delete {STATE_FILE} in BACKUP_DIR if it should stay stopped"
    )


def start_recorded(
    client: docker.DockerClient, backup_dir: Path, ready_timeout: float, now: datetime,
    ready_check: Callable[[Container], bool] | None = None, cancel: threading.Event | None = None,
) -> RecordedRestart:
    """Start the containers a snapshot stopped and did not start again (the daemon died, or
    their start failed), unless the record is stale. Call only while holding the backup lock.

    Containers that run already or are gone need nothing. The record is cleared when none is
    left to start; it stays while any failed (the next attempt tries again) or is stale (left
    stopped, and reported, until someone starts it or deletes the record).
    """
    result = RecordedRestart(record=read_record(backup_dir))
    if result.record is None:
        return result
    record = result.record
    stale = is_stale(parse_time(record.stopped_at), now)
    to_start = []
    for ref in record.containers:
        status = _status(client, ref)
        if status in ("running", "gone"):
            continue
        if stale:
            result.stale.append(ref)
        else:
            to_start.append(ref)
    if to_start:
        log.warning("restarting_containers_left_stopped", volume=record.volume, stopped_at=record.stopped_at,
                    snapshot=record.snapshot, containers=[ref.name for ref in to_start])
    for ref in to_start:
        problems = start_containers(client, [ref], ready_timeout, ready_check, cancel)
        if problems:
            result.failed[ref.name] = "; ".join(problems)
        else:
            result.started.append(ref)
    unconfirmed = bool(result.started) and _shutting_down(cancel)  # not waited for: the next daemon checks
    if not result.failed and not result.stale and not unconfirmed:
        clear_record(backup_dir)
    return result


def _status(client: docker.DockerClient, ref: ContainerRef) -> str:
    """'running', 'gone' or Docker's other status words; 'unknown' when Docker does not answer."""
    try:
        return client.containers.get(ref.id).status
    except docker.errors.NotFound:
        log.warning("stopped_container_gone", container=ref.name)
        return "gone"
    except docker.errors.DockerException:
        return "unknown"  # start_containers reports it


def restart_recorded(client: docker.DockerClient, backup_dir: Path, ready_timeout: float,
                     now: datetime | None = None, ready_check: Callable[[Container], bool] | None = None) -> list[str]:
    """``start_recorded`` for callers about to touch the volume: the problems (stale ones too), one line each."""
    return start_recorded(client, backup_dir, ready_timeout, now or datetime.now().astimezone(), ready_check).problems
