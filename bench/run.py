"""pgbackup benchmark (issue 7): one command, one machine, every contender in one run.

    python -m bench [--size MB] [--rounds N] [--markdown FILE] [--json FILE]

Starts PostgreSQL 15 containers (the image the tests use), a local SeaweedFS S3 server,
fills a deterministic dataset, measures every contender in alternating rounds, then the
restore and the idle daemon, prints the table and writes it as markdown and JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import contenders as bench_contenders
from bench import dataset as bench_dataset
from bench import phases, report
from bench import pitr as bench_pitr
from bench.contenders import BenchContext
from bench.measure import run_rounds
from tests.support import docker_env

DEFAULT_MARKDOWN = REPO_ROOT / "bench" / "results" / "latest.md"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=float, default=1500, help="raw pg_dumpall size in MB (default 1500)")
    parser.add_argument("--small-size", type=float, default=100,
                        help="size of the small dataset for the RSS growth check, MB (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender (default 3)")
    parser.add_argument("--idle-seconds", type=float, default=20, help="how long the idle daemon is sampled")
    parser.add_argument("--seed", type=int, default=bench_dataset.DEFAULT_SEED)
    parser.add_argument("--profiles", default="low,high",
                        help="other dataset profiles to measure the default backups on, comma list of "
                             f"{', '.join(bench_dataset.PROFILES)}, or 'none' (default low,high)")
    parser.add_argument("--profile-size", type=float, default=500,
                        help="raw pg_dumpall size in MB of each --profiles dataset (default 500)")
    parser.add_argument("--pitr-size", type=float, default=500,
                        help="raw pg_dumpall size in MB of the point-in-time recovery phase's dataset (default 500; "
                             "0 leaves the phase out)")
    parser.add_argument("--pitr-write-seconds", type=float, default=600,
                        help="seconds of steady writes before the RTO is measured (default 600, as issue 18 asks)")
    parser.add_argument("--pitr-tps-seconds", type=float, default=30,
                        help="seconds of pgbench per write-throughput variant (default 30)")
    parser.add_argument("--no-s3", action="store_true", help="leave out the S3 upload contenders")
    parser.add_argument("--variants", help="comma list of pgbackup variants to run (default: all), e.g. default")
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN, help=f"default {DEFAULT_MARKDOWN}")
    parser.add_argument("--json", type=Path, help="raw numbers (default: the markdown path with .json)")
    parser.add_argument("--work-dir", type=Path, help="scratch space for artifacts (default: a new temp dir)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.size <= 0 or args.small_size <= 0 or args.profile_size <= 0:
        parser.error("--rounds, --size, --small-size and --profile-size must be positive")
    args.profiles = [] if args.profiles == "none" else [name.strip() for name in args.profiles.split(",")]
    unknown = [name for name in args.profiles if name not in bench_dataset.PROFILES]
    if unknown:
        parser.error(f"--profiles: unknown {', '.join(unknown)}; choose from {', '.join(bench_dataset.PROFILES)}")
    return args


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def machine_description(client) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    docker_version = client.version().get("Version", "?")
    return (f"{os.cpu_count()} CPUs ({cpu}), {memory:.1f} GiB RAM, {platform.platform()}, "
            f"Docker {docker_version}, Python {platform.python_version()}")


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "daemon"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=False).stdout.strip()
        return commit + (" (daemon/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def start_s3(work_dir: Path):
    try:
        from tests.support.s3 import S3Server

        server = S3Server(base_dir=work_dir / "s3")
        server.start()
        return server, None
    except Exception as error:  # noqa: BLE001 - S3 contenders become n/a with this reason
        return None, f"{type(error).__name__}: {error}"


def measure_profile(client, image: str, name: str, args: argparse.Namespace, work_dir: Path,
                    datasets: list) -> report.ProfileRun:
    """The default backups and the references on a dataset of another compressibility."""
    data = bench_dataset.create_dataset(client, image, args.profile_size, seed=args.seed, profile=name,
                                        name_prefix=f"pgbackup-bench-{name}")
    datasets.append(data)
    try:
        context = BenchContext(data.server, work_dir)
        results = run_rounds(bench_contenders.profile_contenders(context), args.rounds, log)
    finally:
        data.remove()
        shutil.rmtree(work_dir, ignore_errors=True)
    return report.ProfileRun(data.profile.name, data.profile.description, data.raw_dump_bytes, results)


def measure_pitr_phase(client, image: str, args: argparse.Namespace, work_dir: Path) -> bench_pitr.PitrResult:
    """The point-in-time recovery phase; a failure is reported in its table, not fatal to the run."""
    result = bench_pitr.PitrResult(size_label=f"{args.pitr_size:g} MB")
    try:
        bench_pitr.measure_pitr(result, client, image, args.pitr_size, work_dir, seed=args.seed,
                                write_seconds=args.pitr_write_seconds, tps_seconds=args.pitr_tps_seconds, log=log)
    except Exception as error:  # noqa: BLE001 - the figures measured before, and the other phases', stand
        log(f"point-in-time recovery phase failed: {error}")
        result.notes["the rest of the phase"] = f"failed: {error}"
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    started = datetime.now(UTC)
    meta = {"command": command.strip(), "started": started.isoformat(timespec="seconds"),
            "load_before": load_average(), "commit": git_commit(), "rounds": args.rounds,
            "size_label": f"{args.size:g} MB", "small_size_label": f"{args.small_size:g} MB"}
    client = docker_env.connect()
    meta["machine"] = machine_description(client)
    log(f"machine: {meta['machine']}; load average {meta['load_before']}; commit {meta['commit']}")
    image = docker_env.select_postgres_image(client)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="pgbackup-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    s3, s3_problem = (None, "--no-s3 given") if args.no_s3 else start_s3(work_dir)
    if s3_problem:
        log(f"no S3 server: {s3_problem}")
    variant_names = {name.strip() for name in args.variants.split(",")} if args.variants else None
    datasets = []
    try:
        log(f"small dataset ({args.small_size:g} MB) for the peak RSS comparison")
        small_data = bench_dataset.create_dataset(client, image, args.small_size, seed=args.seed)
        datasets.append(small_data)
        small_context = BenchContext(small_data.server, work_dir / "small", s3, s3_problem)
        small = run_rounds(bench_contenders.rss_contenders(small_context), args.rounds, log)
        small_data.remove()

        log(f"dataset of {args.size:g} MB with image {image}")
        data = bench_dataset.create_dataset(client, image, args.size, seed=args.seed)
        datasets.append(data)
        meta["dataset_line"] = (
            f"{data.raw_dump_bytes / 1e6:.0f} MB of raw pg_dumpall output (--size {args.size:g}, seed {args.seed}), "
            f"databases {', '.join(bench_dataset.DATABASES)}, {sum(data.rows.values()):,} rows in "
            f"{len(data.rows)} tables, image {image}, loaded in {data.load_seconds:.0f} s; "
            f"small dataset {small_data.raw_dump_bytes / 1e6:.0f} MB"
        )
        log(meta["dataset_line"])
        context = BenchContext(data.server, work_dir / "large", s3, s3_problem)
        contenders = [*bench_contenders.reference_contenders(context),
                      *bench_contenders.backup_contenders(context, with_s3=not args.no_s3, variant_names=variant_names)]
        large = run_rounds(contenders, args.rounds, log)

        log("restore into empty servers")
        restore = run_rounds(phases.restore_contenders(context, client, image, data.rows), args.rounds, log)

        log(f"idle daemon for {args.idle_seconds:g} s")
        idle = phases.measure_idle(context, args.idle_seconds)
        data.remove()

        pitr = None
        if args.pitr_size > 0:
            pitr = measure_pitr_phase(client, image, args, work_dir / "pitr")

        profiles = {}
        for name in args.profiles:
            log(f"profile {name}: dataset of {args.profile_size:g} MB")
            profiles[name] = measure_profile(client, image, name, args, work_dir / f"profile-{name}", datasets)
    finally:
        for item in datasets:
            item.remove()
        if s3 is not None:
            s3.kill()
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)

    meta["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    meta["load_after"] = load_average()
    method_keys = [bench_contenders.method_key(method) for method in bench_contenders.methods()]
    meta["default_method"] = method_keys[0]
    targets = report.evaluate_targets(large, small, restore, idle, method_keys)
    main_profile = report.ProfileRun(data.profile.name, data.profile.description, data.raw_dump_bytes, large)
    profile_runs = [main_profile, *profiles.values()]
    round_two = report.evaluate_round_two_targets(large, restore, profile_runs, method_keys[0])
    parts = report.sections(large, small, restore, idle, targets, meta, profile_runs, round_two)
    if pitr is not None:
        parts.insert(-2, (f"Point-in-time recovery ({pitr.size_label} dataset, issue 18)", bench_pitr.PITR_HEADER,
                          bench_pitr.rows(pitr)))
    report.print_report(parts, meta)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(report.markdown(parts, meta))
    json_path = args.json or args.markdown.with_suffix(".json")
    json_path.write_text(json.dumps({
        "meta": meta,
        "dataset": {"raw_dump_bytes": data.raw_dump_bytes, "rows": data.rows,
                    "small_raw_dump_bytes": small_data.raw_dump_bytes},
        "large": [r.to_json() for r in large.values()],
        "small": [r.to_json() for r in small.values()],
        "restore": [r.to_json() for r in restore.values()],
        "idle": idle.to_json(),
        "profiles": [{"name": p.name, "raw_dump_bytes": p.raw_dump_bytes,
                      "results": [r.to_json() for r in p.results.values()]} for p in profiles.values()],
        "pitr": pitr.to_json() if pitr is not None else None,
        "targets": [{"name": t.name, "measured": t.measured, "limit": t.limit, "verdict": t.verdict,
                     "note": t.note} for t in targets],
        "targets_round_two": [{"name": t.name, "measured": t.measured, "limit": t.limit, "verdict": t.verdict,
                               "note": t.note} for t in round_two],
    }, indent=2))
    log(f"wrote {args.markdown} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
