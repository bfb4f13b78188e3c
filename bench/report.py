"""The benchmark's table, the issue's targets as met / not met, and the markdown file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.measure import Result
from bench.phases import IdleResult

MB = 1_000_000


@dataclass
class Target:
    name: str
    measured: str  # e.g. "0.31 × (5.1 s / 16.4 s)"
    limit: str
    met: bool | None  # None: cannot be judged (a contender is n/a)
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "n/a"}[self.met]


def _seconds(result: Result | None) -> float | None:
    return result.seconds if result is not None and result.ok else None


def _why(*results: Result | None) -> str:
    reasons = [f"{r.contender.key}: {r.unavailable}" for r in results if r is not None and r.unavailable]
    missing = [r for r in results if r is None]
    return "; ".join(reasons) + ("; contender missing" if missing else "")


def _ratio_target(name: str, a: Result | None, b: Result | None, limit: float,
                  value: Callable[[Result | None], float | None] = _seconds, unit: str = "s") -> Target:
    left, right = value(a), value(b)
    if left is None or right is None or right == 0:
        return Target(name, "—", f"≤ {limit:g} ×", None, _why(a, b))
    ratio = left / right
    shown = f"{ratio:.2f} × ({_fmt(left, unit)} / {_fmt(right, unit)})"
    return Target(name, shown, f"≤ {limit:g} ×", ratio <= limit)


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value / MB:.1f} MB"


def _output(result: Result | None) -> float | None:
    return float(result.output_bytes) if result is not None and result.output_bytes is not None else None


@dataclass
class ProfileRun:
    """The results on one dataset profile (the main dataset's own results included)."""

    name: str
    description: str
    raw_dump_bytes: int
    results: dict[str, Result]

    def get(self, key: str) -> Result | None:
        return self.results.get(key)

    @property
    def compression_ratio(self) -> float | None:
        """Raw pg_dumpall bytes per byte of the current pipeline's gzip output."""
        current = _output(self.get("current"))
        return self.raw_dump_bytes / current if current else None


# Issue 16's targets.
DATABASES_VS_FULL_LIMIT = 1.3
PROFILE_PHYSICAL_LIMIT = 1.25
RESTORE_FULL_LIMIT = 0.6
GB = 1_000_000_000


def evaluate_round_two_targets(large: dict[str, Result], restore: dict[str, Result], profiles: list[ProfileRun],
                               method: str) -> list[Target]:
    """Per-database run against the full backup and its output against pg_dump -Fc, the parallel
    full restore, and on each dataset profile the full backup against the physical limit and
    the current pipeline's output."""
    full, databases = large.get(f"full/{method}/default"), large.get(f"databases/{method}/default")
    targets = [
        _ratio_target(f"per-database backups ({method}) vs full backup", databases, full, DATABASES_VS_FULL_LIMIT),
        _ratio_target(f"per-database backups output ({method}) vs sum of pg_dump -Fc", databases,
                      large.get("pg_dump_fc"), 1.0, value=_output, unit="bytes"),
        _ratio_target("restore full with pgbackup vs plain restore", restore.get("restore/full"),
                      restore.get("restore/plain"), RESTORE_FULL_LIMIT),
    ]
    for profile in profiles:
        full = profile.get(f"full/{method}/default")
        targets += [
            _ratio_target(f"profile {profile.name}: full backup vs physical limit", full, profile.get("physical"),
                          PROFILE_PHYSICAL_LIMIT),
            _ratio_target(f"profile {profile.name}: full backup output vs current pipeline output", full,
                          profile.get("current"), 1.0, value=_output, unit="bytes"),
        ]
    return targets


def profile_rows(profiles: list[ProfileRun], method: str) -> list[list[str]]:
    rows = []
    for profile in profiles:
        def seconds(key: str, profile=profile) -> str:
            value = _seconds(profile.get(key))
            return f"{value:.2f}" if value is not None else "n/a"

        def megabytes(key: str, profile=profile) -> str:
            value = _output(profile.get(key))
            return f"{value / MB:.1f}" if value is not None else "n/a"

        ratio = profile.compression_ratio
        rows.append([profile.name, profile.description, f"{profile.raw_dump_bytes / MB:.0f}",
                     f"{ratio:.1f}:1" if ratio else "n/a", seconds("physical"), seconds("current"),
                     seconds(f"full/{method}/default"), megabytes("current"), megabytes(f"full/{method}/default"),
                     seconds("pg_dump_fc"), seconds(f"databases/{method}/default"), megabytes("pg_dump_fc"),
                     megabytes(f"databases/{method}/default")])
    return rows


PROFILE_HEADER = ["profile", "data", "raw MB", "gzip ratio", "physical s", "current s", "full s", "current MB",
                  "full MB", "pg_dump -Fc s", "databases s", "pg_dump -Fc MB", "databases MB"]


def s3_cost_rows(large: dict[str, Result], method: str) -> list[list[str]]:
    """The sidecar's own CPU for the upload: CPU-seconds of the pgbackup process (and what it
    reaped) with S3 minus without, per GB uploaded; the local S3 server's CPU beside it."""
    rows = []
    for kind in ("full", "databases"):
        for variant in ("default", "encrypted"):
            plain, with_s3 = large.get(f"{kind}/{method}/{variant}"), large.get(f"{kind}/{method}/{variant}/s3")
            if plain is None or with_s3 is None or not (plain.ok and with_s3.ok):
                continue
            uploaded = [s.details.get("uploaded_bytes") for s in with_s3.samples if s.details.get("uploaded_bytes")]
            server = [s.details["s3_server_cpu_seconds"] for s in with_s3.samples
                      if s.details.get("s3_server_cpu_seconds") is not None]
            if not uploaded or plain.process_cpu_seconds is None or with_s3.process_cpu_seconds is None:
                continue
            gigabytes = sorted(uploaded)[len(uploaded) // 2] / GB
            extra = with_s3.process_cpu_seconds - plain.process_cpu_seconds
            server_cpu = sorted(server)[len(server) // 2] if server else None
            rows.append([f"{kind} ({variant})", f"{gigabytes:.3f}", f"{plain.process_cpu_seconds:.1f}",
                         f"{with_s3.process_cpu_seconds:.1f}", f"{extra / gigabytes:.1f}",
                         f"{server_cpu:.1f}" if server_cpu is not None else "n/a",
                         f"{server_cpu / gigabytes:.1f}" if server_cpu is not None else "n/a"])
    return rows


S3_COST_HEADER = ["backup", "uploaded GB", "sidecar CPU s without S3", "sidecar CPU s with S3",
                  "sidecar CPU s per GB uploaded", "S3 server CPU s", "S3 server CPU s per GB"]


IDLE_CPU_LIMIT_PERCENT = 0.5
RSS_LIMIT_MB = 150
RSS_GROWTH_LIMIT = 0.10
IDLE_RSS_LIMIT_MB = 80


def evaluate_targets(large: dict[str, Result], small: dict[str, Result], restore: dict[str, Result],
                     idle: IdleResult, method_keys: list[str]) -> list[Target]:
    targets = []
    get = large.get
    for method in method_keys:
        full, databases = get(f"full/{method}/default"), get(f"databases/{method}/default")
        targets += [
            _ratio_target(f"full backup ({method}) vs current pipeline", full, get("current"), 0.35),
            _ratio_target(f"full backup ({method}) vs physical limit", full, get("physical"), 1.2),
            _ratio_target(f"per-database backups ({method}) vs sum of pg_dump -Fc", databases,
                          get("pg_dump_fc"), 1.2),
            _ratio_target(f"full backup output ({method}) vs current pipeline output", full, get("current"), 1.0,
                          value=_output, unit="bytes"),
        ]
        if method == method_keys[0]:  # the S3 upload is measured with the default method
            targets += [
                _ratio_target(f"full backup ({method}) with S3 upload vs without",
                              get(f"full/{method}/default/s3"), full, 1.15),
                _ratio_target(f"per-database backups ({method}) with S3 upload vs without",
                              get(f"databases/{method}/default/s3"), databases, 1.15),
            ]
    targets += rss_targets(large, small)
    targets.append(_ratio_target("restore full with pgbackup vs plain restore",
                                 restore.get("restore/full"), restore.get("restore/plain"), 0.6))
    targets.append(_ratio_target("restore all databases with pgbackup restore vs plain restore",
                                 restore.get("restore/pgbackup"), restore.get("restore/plain"), 0.6))
    targets.append(_ratio_target("restore all databases with pg_restore -j (no pgbackup) vs plain restore",
                                 restore.get("restore/direct"), restore.get("restore/plain"), 0.6))
    if idle.unavailable or idle.peak_rss_bytes is None:
        targets.append(Target("idle daemon RSS", "—", f"≤ {IDLE_RSS_LIMIT_MB} MB", None, idle.unavailable or ""))
        targets.append(Target("idle daemon CPU", "—", f"≤ {IDLE_CPU_LIMIT_PERCENT} % of a core", None,
                              idle.unavailable or ""))
    else:
        targets.append(Target("idle daemon RSS", f"{idle.peak_rss_bytes / MB:.1f} MB", f"≤ {IDLE_RSS_LIMIT_MB} MB",
                              idle.peak_rss_bytes <= IDLE_RSS_LIMIT_MB * MB))
        targets.append(Target(
            "idle daemon CPU", f"{idle.cpu_percent:.2f} % ({idle.cpu_seconds:.2f} s CPU in {idle.seconds:.0f} s)",
            f"≤ {IDLE_CPU_LIMIT_PERCENT} % of a core", idle.cpu_percent <= IDLE_CPU_LIMIT_PERCENT))
    return targets


def rss_targets(large: dict[str, Result], small: dict[str, Result]) -> list[Target]:
    peaks = {key: r.peak_rss_bytes for key, r in large.items()
             if r.contender.group == "pgbackup" and r.peak_rss_bytes is not None}
    targets = []
    if peaks:
        worst_key = max(peaks, key=peaks.get)
        worst = peaks[worst_key]
        targets.append(Target("peak RSS of pgbackup during a backup (largest of all settings)",
                              f"{worst / MB:.1f} MB ({worst_key})", f"≤ {RSS_LIMIT_MB} MB",
                              worst <= RSS_LIMIT_MB * MB))
    else:
        targets.append(Target("peak RSS of pgbackup during a backup", "—", f"≤ {RSS_LIMIT_MB} MB", None,
                              "no pgbackup contender ran"))
    growths = {}
    for key, small_result in small.items():
        large_result = large.get(key)
        if small_result.peak_rss_bytes and large_result is not None and large_result.peak_rss_bytes:
            growths[key] = (large_result.peak_rss_bytes / small_result.peak_rss_bytes - 1,
                            small_result.peak_rss_bytes, large_result.peak_rss_bytes)
    if growths:
        worst_key = max(growths, key=lambda k: growths[k][0])
        growth, before, after = growths[worst_key]
        targets.append(Target(
            "peak RSS growth, small to large dataset (largest)",
            f"{growth * 100:+.1f} % ({before / MB:.1f} → {after / MB:.1f} MB, {worst_key})",
            f"< {RSS_GROWTH_LIMIT * 100:.0f} %", growth < RSS_GROWTH_LIMIT))
    else:
        targets.append(Target("peak RSS growth, small to large dataset", "—", f"< {RSS_GROWTH_LIMIT * 100:.0f} %",
                              None, _why(*small.values()) or "no pair of measurements"))
    return targets


def result_rows(results: dict[str, Result]) -> list[list[str]]:
    rows = []
    for result in results.values():
        if result.ok:
            low, high = result.spread
            rows.append([
                result.contender.label, f"{result.seconds:.2f}", f"{low:.2f}–{high:.2f}", str(len(result.samples)),
                f"{result.output_bytes / MB:.1f}" if result.output_bytes is not None else "",
                f"{result.peak_rss_bytes / MB:.1f}" if result.peak_rss_bytes is not None else "",
                f"{result.tree_rss_bytes / MB:.1f}" if result.tree_rss_bytes is not None else "",
                f"{result.machine_cpu_seconds:.1f}" if result.machine_cpu_seconds is not None else "",
                str(result.samples[0].details.get("method") or ""),
            ])
        else:
            rows.append([result.contender.label, "n/a", "", "0", "", "", "", "", ""])
            rows[-1].append(result.unavailable or "no sample")
    return rows


RESULT_HEADER = ["contender", "median s", "min–max s", "runs", "output MB", "peak RSS MB", "tree RSS MB",
                 "machine CPU s", "ran as"]


def _with_notes(rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    header = [*RESULT_HEADER, "n/a reason"]
    return header, [row + [""] * (len(header) - len(row)) for row in rows]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def cells(row):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |"

    return "\n".join([cells(header), "|" + "---|" * len(header), *(cells(row) for row in rows)])


def sections(large: dict[str, Result], small: dict[str, Result], restore: dict[str, Result],
             idle: IdleResult, targets: list[Target], meta: dict, profiles: list[ProfileRun] = (),
             round_two: list[Target] = ()) -> list[tuple[str, list[str], list[list[str]]]]:
    out = []
    method = meta.get("default_method", "container-auto")
    header, rows = _with_notes(result_rows(large))
    out.append((f"Backups of the {meta['size_label']} dataset", header, rows))
    header, rows = _with_notes(result_rows(small))
    out.append((f"Peak RSS on the small dataset ({meta['small_size_label']})", header, rows))
    header, rows = _with_notes(result_rows(restore))
    out.append(("Restore into an empty server", header, rows))
    idle_row = (["pgbackup run, schedules months away", f"{idle.seconds:.0f}",
                 f"{idle.cpu_seconds:.3f}", f"{idle.cpu_percent:.3f}", f"{idle.peak_rss_bytes / MB:.1f}", ""]
                if not idle.unavailable and idle.peak_rss_bytes is not None
                else ["pgbackup run", "n/a", "", "", "", idle.unavailable or ""])
    out.append(("Idle daemon", ["process", "sampled s", "CPU s", "CPU %", "RSS MB", "n/a reason"], [idle_row]))
    if profiles:
        out.append(("Dataset profiles (default settings, default method)", PROFILE_HEADER,
                    profile_rows(list(profiles), method)))
    out.append(("S3 upload cost (the sidecar's own CPU, the local S3 server's apart)", S3_COST_HEADER,
                s3_cost_rows(large, method) or [["n/a (no pair of runs with and without S3)", *[""] * 6]]))
    out.append(("Targets of issue 7", ["target", "measured", "limit", "verdict", "note"],
                [[t.name, t.measured, t.limit, t.verdict, t.note] for t in targets]))
    out.append(("Targets of issue 16", ["target", "measured", "limit", "verdict", "note"],
                [[t.name, t.measured, t.limit, t.verdict, t.note] for t in round_two]))
    return out


def print_report(parts, meta: dict) -> None:
    print()
    print(f"dataset: {meta['dataset_line']}")
    for title, header, rows in parts:
        print(f"\n== {title}")
        print(text_table(header, rows))


def markdown(parts, meta: dict) -> str:
    lines = [
        "# pgbackup benchmark", "",
        f"Command: `{meta['command']}`", "",
        f"- commit: `{meta['commit']}`",
        f"- started: {meta['started']}, finished: {meta['finished']}",
        f"- machine: {meta['machine']}",
        f"- load average before: {meta['load_before']}; after: {meta['load_after']}",
        f"- dataset: {meta['dataset_line']}",
        (f"- rounds: {meta['rounds']} (contenders alternate: each round starts one later in the list); "
        "the median and the min–max spread are shown"),
        ("- peak RSS: the pgbackup process's kernel high-water mark (ru_maxrss from wait4); "
        "tree RSS: largest sampled sum over its process tree (psutil, every 20 ms)"),
        ("- machine CPU: CPU-seconds the whole machine was busy during the run (/proc/stat, all cores): "
         "the contender, the database server and, with S3, the local S3 server"), "",
    ]
    for title, header, rows in parts:
        lines += [f"## {title}", "", markdown_table(header, rows), ""]
    return "\n".join(lines)
