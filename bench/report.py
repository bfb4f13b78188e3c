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
             idle: IdleResult, targets: list[Target], meta: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    out = []
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
    out.append(("Targets of issue 7", ["target", "measured", "limit", "verdict", "note"],
                [[t.name, t.measured, t.limit, t.verdict, t.note] for t in targets]))
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
