"""The status page (``GET /`` on METRICS_PORT) as HTML: pure functions from a StatusReport.

One self-contained document: no script, no external asset, the size charts inline SVG. Every
value from outside (kind, target, file name, problem text) passes through ``html.escape``.
The one style block is allowed by its hash in CONTENT_SECURITY_POLICY; nothing else may load
or run, and there is no form or link that would change anything: the page only reads.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta
from html import escape

from daemon.monitoring.status import (
    AGEING_SHARE,
    CHART_DAYS,
    BackupStatus,
    NextRun,
    RecoveryWindow,
    RestoreTestStatus,
    SizePoint,
    StatusReport,
)

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1f2328; background: #fff; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
h2 { font-size: 1.1em; margin: 1.6em 0 .5em; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: .35em .7em; border-bottom: 1px solid #d0d7de; vertical-align: middle; }
th { background: #f6f8fa; }
.backups td:nth-child(4), .backups td:nth-child(5) { white-space: nowrap; }
small, .muted { color: #59636e; }
.badge { display: inline-block; padding: .1em .6em; border-radius: 1em; font-weight: 600; color: #fff; }
.fresh .badge, .badge.fresh { background: #1a7f37; }
.ageing .badge, .badge.ageing { background: #bf8700; }
.stale .badge, .badge.stale { background: #cf222e; }
.unwatched .badge, .badge.unwatched { background: #6e7781; }
.overall { font-weight: 600; }
.overall.healthy { color: #1a7f37; }
.overall.unhealthy { color: #cf222e; }
svg.chart .axis { stroke: #d0d7de; stroke-width: 1; }
svg.chart polyline { fill: none; stroke: #0969da; stroke-width: 1.5; }
svg.chart circle { fill: #0969da; }
svg.chart text { font-size: 9px; fill: #59636e; }
""".strip()

STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 240, 48, 4
LEGEND = (
    '<p class="muted">Age against the kind\'s limit (BACKUP_MAX_AGE_HOURS, or a weekly kind\'s own): '
    f'<span class="badge fresh">ok</span> under {AGEING_SHARE:.0%}, '
    '<span class="badge ageing">ageing</span> above that or the latest run failed, <span class="badge stale">stale</span> over the limit, '
    '<span class="badge unwatched">no limit</span> not scheduled.</p>'
)
COLOUR_WORDS = {"fresh": "ok", "ageing": "ageing", "stale": "stale", "unwatched": "no limit"}


def format_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_duration(span: timedelta) -> str:
    """'2 d 3 h', '5 h 12 min', '4 min 30 s', '12 s', '1 d': the two largest units, a zero second one left out."""
    seconds = int(abs(span.total_seconds()))
    sign = "-" if span.total_seconds() < 0 else ""
    parts = [(seconds // 86400, "d"), (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "min"), (seconds % 60, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    shown = parts[:2] if len(parts) > 1 and parts[1][0] else parts[:1]
    return sign + " ".join(f"{value} {unit}" for value, unit in shown)


def format_time(moment: datetime, now: datetime) -> str:
    """``moment`` in the daemon's time zone (that of ``now``), to the minute."""
    return moment.astimezone(now.tzinfo).strftime("%Y-%m-%d %H:%M %Z")


def time_element(moment: datetime, now: datetime) -> str:
    return f'<time datetime="{escape(moment.isoformat())}">{escape(format_time(moment, now))}</time>'


def size_chart_svg(points: list[SizePoint], now: datetime, days: int = CHART_DAYS) -> str:
    """Sizes over the last ``days`` days as an inline SVG: time left to right, 0 to the largest size
    bottom to top, a line through the backups and a dot on each."""
    sizes = [point.size_bytes for point in points]
    label = f"sizes of {len(points)} backups over {days} days"
    if points:
        label += f": {format_size(min(sizes))} to {format_size(max(sizes))}"
    inner_width, inner_height = CHART_WIDTH - 2 * CHART_PAD, CHART_HEIGHT - 2 * CHART_PAD - 10
    start, span = now - timedelta(days=days), timedelta(days=days).total_seconds()
    largest = max(sizes, default=0) or 1

    def x(point: SizePoint) -> float:
        return CHART_PAD + inner_width * min(1.0, max(0.0, (point.started_at - start).total_seconds() / span))

    def y(point: SizePoint) -> float:
        return CHART_PAD + 10 + inner_height * (1 - point.size_bytes / largest)

    coordinates = [(round(x(p), 1), round(y(p), 1)) for p in points]
    baseline = CHART_HEIGHT - CHART_PAD
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{CHART_PAD}" y1="{baseline}" x2="{CHART_WIDTH - CHART_PAD}" y2="{baseline}"/>',
        f'<text x="{CHART_PAD}" y="{CHART_PAD + 7}">{escape(format_size(largest) if points else "no backups")}</text>',
    ]
    if len(coordinates) > 1:
        parts.append(f'<polyline points="{" ".join(f"{cx},{cy}" for cx, cy in coordinates)}"/>')
    parts += [f'<circle cx="{cx}" cy="{cy}" r="2"/>' for cx, cy in coordinates]
    parts.append("</svg>")
    return "".join(parts)


def backup_row(row: BackupStatus, now: datetime) -> str:
    if row.newest is None:
        newest = '<span class="muted">none</span>'
        size = ""
    else:
        newest = f"{time_element(row.newest.started_at, now)}<br><small>{escape(row.newest.file)}</small>"
        size = escape(format_size(row.newest.size_bytes))
    age = escape(format_duration(row.age)) if row.age is not None else "—"
    limit = f" of {escape(format_duration(row.limit))}" if row.limit is not None else ""
    note = f"<br><small>{escape(row.note)}</small>" if row.note else ""
    cells = [
        escape(row.kind),
        escape(row.target) or '<span class="muted">—</span>',
        newest,
        f'<span class="badge">{escape(COLOUR_WORDS[row.freshness])}</span> {age}{limit}{note}',
        size,
        size_chart_svg(row.sizes, now),
        escape(row.location),
    ]
    return f'<tr class="{escape(row.freshness)}">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def backups_section(rows: list[BackupStatus], now: datetime) -> str:
    if not rows:
        return '<section id="backups"><h2>Backups</h2><p class="muted">No backup and no scheduled kind.</p></section>'
    head = "".join(f"<th>{name}</th>" for name in (
        "Kind", "Target", "Newest backup", "Age / limit", "Size", f"Size, last {CHART_DAYS} days", "Where"))
    body = "".join(backup_row(row, now) for row in rows)
    return (f'<section id="backups"><h2>Backups</h2>{LEGEND}<table class="backups"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></section>")


def restore_test_section(test: RestoreTestStatus, now: datetime) -> str:
    if not test.ran:
        text = '<p class="muted">No restore test since the daemon started (see the next scheduled runs).</p>'
    else:
        colour, outcome = ("fresh", "passed") if test.passed else ("stale", "failed")
        text = (f'<p><span class="badge {colour}">{outcome}</span> latest restore test; measured restore time '
                f"(RTO): <strong>{escape(format_duration(timedelta(seconds=round(test.seconds))))}</strong></p>")
        if test.last_success:
            items = "".join(f"<li>{escape(target)}: {time_element(moment, now)}</li>"
                            for target, moment in sorted(test.last_success.items()))
            text += f"<p>Last passed:</p><ul>{items}</ul>"
    return f'<section id="restore-test"><h2>Restore test</h2>{text}</section>'


def next_runs_section(runs: list[NextRun], now: datetime) -> str:
    if not runs:
        return ""
    rows = "".join(
        f"<tr><td>{escape(run.job)}</td><td>"
        + (f"{time_element(run.at, now)} <small>(in {escape(format_duration(run.at - now))})</small>"
           if run.at is not None else '<span class="muted">off</span>')
        + "</td></tr>"
        for run in runs)
    return (f'<section id="schedule"><h2>Next scheduled runs</h2><table><thead><tr><th>Job</th><th>Next run</th>'
            f"</tr></thead><tbody>{rows}</tbody></table></section>")


def recovery_window_section(window: RecoveryWindow | None, now: datetime) -> str:
    if window is None:
        return ""
    return (f'<section id="recovery-window"><h2>Point-in-time recovery</h2><p>Recoverable from '
            f"{time_element(window.earliest, now)} to {time_element(window.latest, now)} "
            f"<small>({escape(format_duration(now - window.latest))} ago)</small></p></section>")


def overall(report: StatusReport) -> str:
    word, colour = ("Healthy", "healthy") if report.healthy else ("Unhealthy", "unhealthy")
    problems = "".join(f"<li>{escape(problem)}</li>" for problem in report.problems)
    return (f'<p class="overall {colour}">{word}</p>' + (f"<ul>{problems}</ul>" if problems else "")
            + f'<p class="muted">As of {time_element(report.now, report.now)}. Read-only; reload to update. '
            "Also: /metrics, /healthz.</p>")


def render_page(report: StatusReport) -> str:
    now = report.now
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>pgbackup status</title><style>{STYLE}</style></head><body>"
        f"<header><h1>pg-backup-sidecar</h1>{overall(report)}</header><main>"
        + backups_section(report.backups, now)
        + restore_test_section(report.restore_test, now)
        + next_runs_section(report.next_runs, now)
        + recovery_window_section(report.recovery_window, now)
        + "</main></body></html>\n"
    )
