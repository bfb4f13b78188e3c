"""Every way of taking the backup that the benchmark compares, as data.

Adding a contender is one line: a `Variant` in VARIANTS (environment settings for
`pgbackup backup ...`), or a `Contender` in `reference_contenders`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import typing
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pyrage
from pydantic import ValidationError

from bench.measure import Contender, Sample, Unavailable, run_process, tail
from tests.support.pgbackup_cli import REPO_ROOT, exec_env, tcp_env
from tests.support.postgres import PgServer

HOST_CLIENT_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class Variant:
    """Settings for `pgbackup backup KIND`; `kinds` limits it to the kinds it concerns."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    kinds: tuple[str, ...] = ("full", "databases")


# A throwaway age public key for the encrypted variant (the private half is never needed).
BENCH_RECIPIENT = str(pyrage.x25519.Identity.generate().to_public())

# The settings the daemon offers that change how a dump is produced or compressed.
# A variant whose variable the daemon does not know (or rejects) is reported as n/a.
VARIANTS = (
    Variant("default"),
    Variant("COMPRESSION_LEVEL=1", {"COMPRESSION_LEVEL": "1"}, kinds=("databases",)),
    Variant("BACKUP_FORMAT=directory", {"BACKUP_FORMAT": "directory"}, kinds=("databases",)),
    Variant("GZIP_LEVEL=2", {"GZIP_LEVEL": "2"}, kinds=("full",)),
    Variant("GZIP_LEVEL=6", {"GZIP_LEVEL": "6"}, kinds=("full",)),
    Variant("GZIP_THREADS=1", {"GZIP_THREADS": "1"}, kinds=("full",)),
    Variant("encrypted", {"ENCRYPT_RECIPIENTS": BENCH_RECIPIENT}),
)
ENCRYPTED = VARIANTS[-1]  # also measured with the S3 upload: both on must keep memory flat
# Settings whose name contains one of these are added automatically, one variant per
# non-default choice (e.g. a COMPRESSION=zstd option, a COMPRESSION_THREADS count).
DISCOVER_SETTINGS_CONTAINING = ("compress", "thread")


@dataclass(frozen=True)
class Method:
    """How pgbackup reaches the server: `container` (POSTGRES_CONTAINER, with the password
    the team's container has) or `host` (POSTGRES_HOST, the published port), plus settings."""

    name: str
    reach: str  # container | host
    env: dict[str, str] = field(default_factory=dict)


def methods() -> list[Method]:
    """POSTGRES_HOST, and POSTGRES_CONTAINER once per choice of DUMP_CONNECTION (if the daemon has it)."""
    found = []
    info = settings_fields().get("dump_connection")
    if info is not None and typing.get_origin(info.annotation) is typing.Literal:
        choices = sorted(typing.get_args(info.annotation), key=lambda value: value != info.default)
        found += [Method(f"container, DUMP_CONNECTION={choice}", "container", {"DUMP_CONNECTION": choice})
                  for choice in choices]
    else:
        found.append(Method("container", "container"))
    found.append(Method("POSTGRES_HOST", "host"))
    return found


def method_key(method: Method) -> str:
    return method.name.replace("container, DUMP_CONNECTION=", "container-").replace("POSTGRES_HOST", "host")
KINDS = ("full", "databases")


def settings_fields() -> dict:
    from daemon.settings import Settings

    return dict(Settings.model_fields)


def check_variant(variant: Variant) -> str | None:
    """None when the daemon accepts the variant's settings, else why not."""
    from daemon.settings import Settings

    fields = settings_fields()
    unknown = [name for name in variant.env if name.lower() not in fields]
    if unknown:
        return f"the daemon has no setting {', '.join(unknown)} (yet)"
    try:
        Settings(postgres_container="check", **{k.lower(): v for k, v in variant.env.items()})
    except ValidationError as error:
        return f"the daemon rejects {variant.env}: {error.errors()[0]['msg']}"
    return None


def discovered_variants() -> list[Variant]:
    """One variant per non-default value of compression-related settings with a fixed choice set."""
    found = []
    known = {name for variant in VARIANTS for name in variant.env}
    for name, info in settings_fields().items():
        if name.upper() in known or not any(word in name for word in DISCOVER_SETTINGS_CONTAINING):
            continue
        annotation = info.annotation
        choices: list[str] = []
        if typing.get_origin(annotation) is typing.Literal:
            choices = [str(value) for value in typing.get_args(annotation) if value != info.default]
        elif annotation is int and "thread" in name:
            choices = [str(value) for value in (1, 2) if value != info.default]
        elif annotation is bool:
            choices = [str(not info.default).lower()]
        for choice in choices:
            found.append(Variant(f"{name.upper()}={choice}", {name.upper(): choice}))
    return found


def all_variants() -> list[Variant]:
    return [*VARIANTS, *discovered_variants()]


@dataclass
class BenchContext:
    server: PgServer
    work_dir: Path
    s3: object | None = None  # tests.support.s3.S3Server
    s3_problem: str | None = None  # why there is no S3 server
    keep_for_restore: dict[str, Path] = field(default_factory=dict)

    def scratch(self, name: str) -> Path:
        path = self.work_dir / "scratch" / f"{name.replace('/', '_')}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path

    def keep(self, key: str, path: Path) -> None:
        """Keep `path` (a file or directory) for the restore phase, replacing the previous one."""
        previous = self.keep_for_restore.get(key)
        if previous is not None and previous != path:
            _remove(previous)
        self.keep_for_restore[key] = path


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def pgbackup_env(context: BenchContext, method: Method, backup_dir: Path, **settings: str) -> dict[str, str]:
    server = context.server
    if method.reach == "container":
        return exec_env(server, backup_dir, POSTGRES_PASSWORD=server.password or "", LOG_LEVEL="WARNING",
                        **method.env, **settings)
    return tcp_env(server, backup_dir, LOG_LEVEL="WARNING", **method.env, **settings)


def pgbackup_contender(context: BenchContext, kind: str, method: Method, variant: Variant, s3: bool,
                       *, keep_as: str | None = None) -> Contender:
    key = f"{kind}/{method_key(method)}/{variant.name}" + ("/s3" if s3 else "")
    label = f"pgbackup backup {kind} ({method.name}; {variant.name}{'; S3 upload' if s3 else ''})"

    def run() -> Sample:
        problem = check_variant(variant)
        if problem:
            raise Unavailable(problem)
        if s3 and context.s3 is None:
            raise Unavailable(f"no local S3 server: {context.s3_problem}")
        scratch = context.scratch(key)
        backup_dir = scratch / "backups"
        backup_dir.mkdir()
        settings = dict(variant.env)
        if s3:
            settings.update(s3_settings(context.s3))
        env = pgbackup_env(context, method, backup_dir, **settings)
        s3_cpu_before = s3_server_cpu_seconds(context.s3) if s3 else None
        run = run_process([sys.executable, "-m", "daemon", "backup", kind], env=env, cwd=REPO_ROOT,
                          scratch=scratch)
        s3_cpu_after = s3_server_cpu_seconds(context.s3) if s3 else None
        if run.returncode != 0:
            raise RuntimeError(f"exit {run.returncode}: {tail(run.stderr)}")
        artifacts = [Path(line) for line in run.stdout.splitlines() if line.strip()]
        if not artifacts:
            raise RuntimeError(f"printed no artifact path; stderr: {tail(run.stderr)}")
        output = sum(_size(path) for path in artifacts)
        details = {"artifacts": len(artifacts), "method": manifest_field(artifacts[0], "method")}
        if s3:
            uploaded = empty_bucket(context.s3)
            if uploaded == 0:
                shutil.rmtree(scratch, ignore_errors=True)
                raise Unavailable(
                    "S3 settings are not effective yet: with S3_BUCKET/S3_ENDPOINT_URL set, "
                    f"'pgbackup backup {kind}' uploaded nothing to the bucket"
                )
            details["uploaded_bytes"] = uploaded
            if s3_cpu_before is not None and s3_cpu_after is not None:
                details["s3_server_cpu_seconds"] = round(s3_cpu_after - s3_cpu_before, 2)
        if keep_as:
            context.keep(keep_as, backup_dir)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        return Sample(run.seconds, output, run.peak_rss_bytes, run.tree_rss_bytes, details,
                      machine_cpu_seconds=run.machine_cpu_seconds, process_cpu_seconds=run.process_cpu_seconds)

    return Contender(key, label, "pgbackup", run)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def s3_settings(server) -> dict[str, str]:
    return {
        "S3_ENDPOINT_URL": server.endpoint_url, "S3_BUCKET": server.bucket, "S3_REGION": server.region,
        "AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
    }


def s3_server_cpu_seconds(server) -> float | None:
    """CPU time the local S3 server has used so far (it shares the machine's cores)."""
    try:
        times = psutil.Process(server.process.pid).cpu_times()
    except (AttributeError, psutil.Error):
        return None
    return times.user + times.system


def empty_bucket(server) -> int:
    """Delete every object in the bucket; return how many bytes they held."""
    client = server.client()
    total = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=server.bucket):
        objects = page.get("Contents", [])
        total += sum(item["Size"] for item in objects)
        if objects:
            client.delete_objects(Bucket=server.bucket,
                                  Delete={"Objects": [{"Key": item["Key"]} for item in objects]})
    # Unfinished multipart uploads hold space too.
    for upload in client.list_multipart_uploads(Bucket=server.bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=server.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return total


def shell_contender(context: BenchContext, key: str, label: str, group: str, script: str,
                    *, output_file: bool = False, output_from_stdout: bool = False,
                    env: dict[str, str] | None = None, keep_as: str | None = None) -> Contender:
    """A contender that is a bash pipeline; `$OUT` names the output file when output_file."""

    def run() -> Sample:
        scratch = context.scratch(key)
        out = scratch / "output"
        run_env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "OUT": str(out), **(env or {})}
        run = run_process(["bash", "-o", "pipefail", "-c", script], env=run_env, scratch=scratch)
        if run.returncode != 0:
            raise RuntimeError(f"exit {run.returncode}: {tail(run.stderr)}")
        output = None
        if output_file:
            output = out.stat().st_size
        elif output_from_stdout:
            output = int(run.stdout.split()[-1])
        if keep_as:
            kept = context.work_dir / "kept" / f"{key}.sql.gz"
            kept.parent.mkdir(exist_ok=True)
            out.replace(kept)
            context.keep(keep_as, kept)
        shutil.rmtree(scratch, ignore_errors=True)
        return Sample(run.seconds, output, machine_cpu_seconds=run.machine_cpu_seconds)

    return Contender(key, label, group, run)


def list_databases(server: PgServer) -> list[str]:
    """The databases `pgbackup backup databases` dumps when BACKUP_DATABASES is empty."""
    from daemon.sources.postgres import LIST_DATABASES_SQL

    return [row for row in server.psql(LIST_DATABASES_SQL).splitlines() if row]


def default_compression_level() -> int:
    return int(settings_fields()["compression_level"].default)


def reference_contenders(context: BenchContext) -> list[Contender]:
    """The physical limit, the team's current pipeline, the pg_dump -Fc reference, diagnostics."""
    container = context.server.name
    level = default_compression_level()
    databases = " ".join(f"'{db}'" for db in list_databases(context.server))
    password = context.server.password or ""
    port = context.server.port
    dumpall_tcp = f"{HOST_CLIENT_BIN}/pg_dumpall -h 127.0.0.1 -p {port} -U postgres --no-password"
    return [
        shell_contender(context, "physical", "physical limit: pg_dumpall > /dev/null inside the container",
                        "reference", f"docker exec {container} sh -c 'pg_dumpall -U postgres > /dev/null'"),
        shell_contender(context, "current", "current pipeline: docker exec pg_dumpall | gzip > file",
                        "reference", f"docker exec {container} pg_dumpall -U postgres | gzip > \"$OUT\"",
                        output_file=True, keep_as="current"),
        shell_contender(
            context, "pg_dump_fc", f"sum of pg_dump -Fc -Z{level} inside the container (per database)",
            "reference",
            f"docker exec {container} sh -c 'set -e; total=0; for db in \"$@\"; do "
            f"pg_dump -U postgres -Fc -Z{level} -f /tmp/bench-ref.dump \"$db\"; "
            "total=$((total + $(stat -c %s /tmp/bench-ref.dump))); rm -f /tmp/bench-ref.dump; done; "
            f"echo $total' sh {databases}",
            output_from_stdout=True,
        ),
        shell_contender(context, "diag/exec_stream", "diagnostic: docker exec pg_dumpall > /dev/null on the host",
                        "diagnostic", f"docker exec {container} pg_dumpall -U postgres > /dev/null"),
        shell_contender(context, "diag/tcp_stream", "diagnostic: pg_dumpall over TCP > /dev/null",
                        "diagnostic", f"{dumpall_tcp} > /dev/null", env={"PGPASSWORD": password}),
    ]


def backup_contenders(context: BenchContext, *, with_s3: bool = True,
                      variant_names: set[str] | None = None) -> list[Contender]:
    """pgbackup backups: each method with the default settings, each variant with the default
    method (the first: POSTGRES_CONTAINER with DUMP_CONNECTION's default), and the default
    with the S3 upload. `variant_names` limits the variants (the default always runs).

    The default method's default full and per-database backups are kept for the restore phase.
    """
    contenders = []
    all_methods = methods()
    default_method = all_methods[0]
    for kind in KINDS:
        for method in all_methods:
            for variant in all_variants():
                wanted = variant is VARIANTS[0] or (
                    method == default_method and (variant_names is None or variant.name in variant_names))
                if kind not in variant.kinds or not wanted:
                    continue
                keep = method == default_method and variant is VARIANTS[0]
                contenders.append(pgbackup_contender(context, kind, method, variant, False,
                                                     keep_as=kind if keep else None))
        if with_s3:
            contenders.append(pgbackup_contender(context, kind, default_method, VARIANTS[0], True))
            if variant_names is None or ENCRYPTED.name in variant_names:
                contenders.append(pgbackup_contender(context, kind, default_method, ENCRYPTED, True))
    return contenders


def profile_contenders(context: BenchContext) -> list[Contender]:
    """What a dataset profile is judged by: the physical limit and the current pipeline against
    the default full and per-database backups (default method), and the pg_dump -Fc reference."""
    references = {c.key: c for c in reference_contenders(context)}
    default_method = methods()[0]
    return [references["physical"], references["current"], references["pg_dump_fc"],
            *(pgbackup_contender(context, kind, default_method, VARIANTS[0], False) for kind in KINDS)]


def rss_contenders(context: BenchContext) -> list[Contender]:
    """The default backups whose peak RSS is compared between the small and the large dataset."""
    return [pgbackup_contender(context, kind, method, VARIANTS[0], False) for kind in KINDS for method in methods()]


def pgbackup_help() -> str:
    result = subprocess.run([sys.executable, "-m", "daemon", "--help"], check=False, cwd=REPO_ROOT, capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "POSTGRES_CONTAINER": "x"})
    return result.stdout + result.stderr


def manifest_field(artifact: Path, name: str):
    manifest = artifact.with_name(artifact.name + ".manifest.json")
    try:
        return json.loads(manifest.read_text()).get(name)
    except (OSError, ValueError):
        return None
