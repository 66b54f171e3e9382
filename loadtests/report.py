"""What a load scenario measured, judged and written down: Locust's CSVs read into figures per endpoint
and over time, /metrics read into the cache hit ratio and the database pool, the verdicts, result.json,
report.md and report.html (charts drawn as inline SVG).

Pure functions over files and numbers: loadtests/scenario.py calls them after a run, and the tests call
them on small data of their own.
"""

from __future__ import annotations

import csv
import html
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.soak import MemoryRow, Sample
from loadtests.knee import knee_reason

# The targets of each scenario (issue 16); the report and result.json repeat them.
P95_TARGET_MS = 100.0
BASELINE_RATIO_MIN = 0.5
P95_STABLE_RATIO = 1.5
TARGETS: dict[str, dict[str, Any]] = {
    "smoke": {"errors": 0},
    "load": {"errors": 0, "p95_ms_below": P95_TARGET_MS, "summary_vs_baseline_at_least": BASELINE_RATIO_MIN},
    "stress": {"knee": "users and requests/s where the p95 passes 1 s or errors appear"},
    "soak": {"errors": 0, "memory": "flat", "p95_last_third_over_first_at_most": P95_STABLE_RATIO},
}


@dataclass
class Endpoint:
    """One row of Locust's stats CSV: a route (or "Aggregated") and its figures over the whole run."""

    name: str
    method: str
    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rps: float


@dataclass
class Point:
    """One second of Locust's history (Aggregated): users, requests/s and the p50/p95 of the last 10 s."""

    seconds: float
    users: int
    rps: float
    failures_per_second: float
    p50_ms: float | None
    p95_ms: float | None


@dataclass
class Verdict:
    name: str
    passed: bool
    evidence: str


def _number(text: str) -> float | None:
    """A figure of Locust's CSVs: "N/A" (no request yet) is None."""
    text = text.strip()
    if not text or text == "N/A":
        return None
    return float(text)


def endpoints_read(path: Path) -> tuple[list[Endpoint], Endpoint]:
    """The routes of Locust's ``*_stats.csv`` and its Aggregated row."""
    rows, total = [], None
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            endpoint = Endpoint(
                name=row["Name"],
                method=row["Type"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                p50_ms=_number(row["50%"]),
                p95_ms=_number(row["95%"]),
                p99_ms=_number(row["99%"]),
                rps=float(row["Requests/s"]),
            )
            if row["Name"] == "Aggregated":
                total = endpoint
            else:
                rows.append(endpoint)
    if total is None:
        raise ValueError(f"{path}: no Aggregated row")
    return rows, total


def history_read(path: Path) -> list[Point]:
    """The Aggregated rows of Locust's ``*_stats_history.csv``, seconds counted from the first."""
    points: list[Point] = []
    first = None
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] != "Aggregated":
                continue
            stamp = float(row["Timestamp"])
            first = stamp if first is None else first
            points.append(
                Point(
                    seconds=stamp - first,
                    users=int(row["User Count"]),
                    rps=float(row["Requests/s"]),
                    failures_per_second=float(row["Failures/s"]),
                    p50_ms=_number(row["50%"]),
                    p95_ms=_number(row["95%"]),
                )
            )
    return points


def failures_read(path: Path) -> list[dict[str, str]]:
    """Locust's ``*_failures.csv``: method, name, error and occurrences of each distinct failure."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [
            {"method": r["Method"], "name": r["Name"], "error": r["Error"], "occurrences": r["Occurrences"]}
            for r in csv.DictReader(handle)
        ]


# --- /metrics -----------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_parse(text: str) -> Series:
    """Prometheus' text format: {(name, ((label, value), ...)): value}."""
    found: Series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = tuple(sorted(_LABEL.findall(match.group(2) or "")))
        found[(match.group(1), labels)] = float(match.group(3))
    return found


def metric_sum(series: Series, name: str, **labels: str) -> float:
    """The sum of ``name``'s series whose labels include ``labels``."""
    return sum(
        value
        for (metric, pairs), value in series.items()
        if metric == name and all((key, wanted) in pairs for key, wanted in labels.items())
    )


def cache_lookups(before: Series, after: Series) -> dict[str, float]:
    """Lookups through the cached selectors during the run, by result (hit, miss, stale, waited)."""
    results: dict[str, float] = defaultdict(float)
    for (metric, pairs), value in after.items():
        if metric == "apm_cache_lookups_total":
            result = dict(pairs).get("result", "")
            results[result] += value - before.get((metric, pairs), 0.0)
    return dict(results)


def cache_hit_ratio(lookups: dict[str, float]) -> float | None:
    """Hits over all lookups; None when nothing was looked up."""
    total = sum(lookups.values())
    return lookups.get("hit", 0.0) / total if total else None


@dataclass
class PoolSample:
    seconds: float
    in_use: float
    size: float
    max_size: float
    waiting: float


def pool_sample(seconds: float, series: Series) -> PoolSample:
    """The web processes' database pool at one scrape (gauges added up over the live workers)."""
    return PoolSample(
        seconds,
        metric_sum(series, "apm_db_pool_connections_in_use"),
        metric_sum(series, "apm_db_pool_size"),
        metric_sum(series, "apm_db_pool_max_size"),
        metric_sum(series, "apm_db_pool_requests_waiting"),
    )


def pool_summary(samples: list[PoolSample]) -> dict[str, Any]:
    if not samples:
        return {"samples": 0}
    return {
        "samples": len(samples),
        "max_in_use": max(s.in_use for s in samples),
        "mean_in_use": round(statistics.fmean(s.in_use for s in samples), 2),
        "max_open": max(s.size for s in samples),
        "max_size": max(s.max_size for s in samples),
        "max_waiting": max(s.waiting for s in samples),
    }


# --- Verdicts -----------------------------------------------------------------------------------------


def verdict_errors(total: Endpoint, other: list[str]) -> Verdict:
    """Zero errors: no failed request, and nothing else went wrong (``other``: processes that died or
    logged errors, ab's failures)."""
    passed = total.failures == 0 and not other
    evidence = f"{total.failures} of {total.requests} requests failed"
    if other:
        evidence += "; " + "; ".join(other[:5])
    return Verdict("zero errors", passed, evidence)


def verdict_p95(total: Endpoint, limit_ms: float = P95_TARGET_MS) -> Verdict:
    p95 = total.p95_ms
    passed = p95 is not None and p95 < limit_ms
    return Verdict(
        f"p95 < {limit_ms:.0f} ms", passed, f"p95 over all {total.requests} requests: {p95} ms (Locust)"
    )


def verdict_ratio(baseline: dict[str, float] | None, minimum: float = BASELINE_RATIO_MIN) -> Verdict:
    name = f"summary at least {minimum:.0%} of the baseline view's throughput"
    if baseline is None:
        return Verdict(name, False, "not measured: /loadtest/baseline did not answer 200")
    passed = baseline["ratio"] >= minimum
    return Verdict(
        name,
        passed,
        f"summary {baseline['summary_rps']:.1f} req/s, baseline {baseline['baseline_rps']:.1f} req/s: "
        f"{baseline['ratio']:.0%} (ab -c 8, best of {len(baseline.get('summary_runs', [])) or 'each'})",
    )


def verdict_memory(rows: list[MemoryRow]) -> Verdict:
    problems = [problem for row in rows if (problem := row.problem()) is not None]
    judged = [row for row in rows if row.judged and row.start is not None]
    evidence = (
        "; ".join(problems)
        if problems
        else (f"{len(judged)} processes within max(10 MiB, 10 %) of their RSS after the warm-up")
    )
    return Verdict("memory flat", not problems, evidence)


def p95_thirds(points: list[Point], warmup: float) -> tuple[float | None, float | None]:
    """The median of the 10-second p95s in the first and the last third after ``warmup``."""
    kept = [p for p in points if p.seconds >= warmup and p.p95_ms is not None]
    if len(kept) < 3:
        return None, None
    end = kept[-1].seconds
    third = (end - warmup) / 3
    first = [p.p95_ms for p in kept if p.seconds <= warmup + third and p.p95_ms is not None]
    last = [p.p95_ms for p in kept if p.seconds >= end - third and p.p95_ms is not None]
    return (statistics.median(first) if first else None, statistics.median(last) if last else None)


def verdict_p95_stable(points: list[Point], warmup: float, ratio: float = P95_STABLE_RATIO) -> Verdict:
    first, last = p95_thirds(points, warmup)
    name = f"p95 stable (last third at most {ratio} x the first)"
    if not first or not last:
        return Verdict(name, False, "too little history after the warm-up")
    return Verdict(
        name,
        last <= ratio * first,
        f"median 10-s p95: first third {first:.0f} ms, last third {last:.0f} ms ({last / first:.2f} x)",
    )


def verdict_knee(knee: dict[str, Any] | None) -> Verdict:
    if knee is None:
        return Verdict("knee found", False, "the stress shape wrote no knee")
    evidence = (
        f"{knee['users']} users, {knee['rps']} req/s, p95 {knee['p95_ms']} ms, {knee['failures']} failures: "
        f"{knee['reason']}"
    )
    if not knee.get("reached"):
        evidence = "no knee before the cap: " + evidence
    return Verdict("knee found", True, evidence)


def knee_from_history(points: list[Point], step_seconds: float) -> dict[str, Any] | None:
    """The knee as the history shows it (a check of the shape's own): the first step whose last point
    is past the p95 limit or failing."""
    by_users: dict[int, Point] = {}
    for point in points:
        if point.users:
            by_users[point.users] = point
    for users in sorted(by_users):
        point = by_users[users]
        failures = math.ceil(point.failures_per_second * step_seconds)
        reason = knee_reason(point.p95_ms, failures)
        if reason is not None:
            return {"users": users, "rps": point.rps, "p95_ms": point.p95_ms, "reason": reason}
    return None


# --- result.json --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything a scenario measured, ready for result.json and the reports."""

    scenario: str
    finished_at: str
    code_version: str
    command: str
    setup_notes: list[str]
    endpoints: list[Endpoint]
    total: Endpoint
    seconds: float
    verdicts: list[Verdict]
    points: list[Point] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    memory: list[MemoryRow] = field(default_factory=list)
    pool: list[PoolSample] = field(default_factory=list)
    lookups: dict[str, float] = field(default_factory=dict)
    knee: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    failures: list[dict[str, str]] = field(default_factory=list)
    load_average: float | None = None

    @property
    def passed(self) -> bool:
        return all(verdict.passed for verdict in self.verdicts)


def result_json(outcome: Outcome) -> dict[str, Any]:
    """result.json: what perf_checklist and people read first."""

    def endpoint(e: Endpoint) -> dict[str, Any]:
        return {
            "name": e.name,
            "method": e.method,
            "requests": e.requests,
            "failures": e.failures,
            "p50_ms": e.p50_ms,
            "p95_ms": e.p95_ms,
            "p99_ms": e.p99_ms,
            "rps": round(e.rps, 2),
        }

    return {
        "scenario": outcome.scenario,
        "finished_at": outcome.finished_at,
        "code_version": outcome.code_version,
        "passed": outcome.passed,
        "targets": TARGETS[outcome.scenario],
        "verdicts": [asdict(v) for v in outcome.verdicts],
        "endpoints": [endpoint(e) for e in outcome.endpoints],
        "total": {**endpoint(outcome.total), "seconds": round(outcome.seconds, 1)},
        "cache_hit_ratio": cache_hit_ratio(outcome.lookups),
        "cache_lookups": outcome.lookups,
        "pool": pool_summary(outcome.pool),
        "knee": outcome.knee,
        "baseline": outcome.baseline,
        "load_average": outcome.load_average,
    }


# --- Markdown -----------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def markdown(outcome: Outcome) -> str:
    result = result_json(outcome)
    lines = [
        f"# Load scenario {outcome.scenario}: {'PASSED' if outcome.passed else 'FAILED'}",
        "",
        f"`{outcome.command}`, finished {outcome.finished_at}, code {outcome.code_version}; "
        f"{outcome.seconds:.0f} s of traffic; mean load average {outcome.load_average or 0:.1f} on the "
        "machine's shared cores (client, servers and databases on the same machine).",
        "",
    ]
    lines += list(outcome.setup_notes) + ([""] if outcome.setup_notes else [])
    lines += ["## Verdicts", ""]
    lines += [f"- {'passed' if v.passed else '**FAILED**'}: {v.name}: {v.evidence}" for v in outcome.verdicts]
    lines += [
        "",
        "## Endpoints",
        "",
        "| method | name | requests | failures | p50 ms | p95 ms | p99 ms | req/s |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|")
    for e in [*sorted(outcome.endpoints, key=lambda e: -e.requests), outcome.total]:
        lines.append(
            f"| {e.method} | `{e.name}` | {e.requests} | {e.failures} | {_ms(e.p50_ms)} | {_ms(e.p95_ms)} | "
            f"{_ms(e.p99_ms)} | {e.rps:.1f} |"
        )
    ratio = result["cache_hit_ratio"]
    lines += ["", "## Cache and database pool", ""]
    lookups = ", ".join(f"{k} {v:.0f}" for k, v in sorted(outcome.lookups.items())) or "none"
    lines.append(
        f"- cache hit ratio (apm_cache_lookups_total during the run): "
        f"{'n/a' if ratio is None else f'{ratio:.1%}'} ({lookups})"
    )
    pool = result["pool"]
    if pool.get("samples"):
        lines.append(
            f"- database pool of the web processes (every 10 s, {pool['samples']} scrapes): in use at most "
            f"{pool['max_in_use']:.0f} (mean {pool['mean_in_use']}), open at most {pool['max_open']:.0f}, "
            f"limit {pool['max_size']:.0f}, waiting at most {pool['max_waiting']:.0f}"
        )
    if outcome.baseline:
        b = outcome.baseline
        lines += [
            "",
            "## Summary against the baseline view",
            "",
            f"`ab -c 8 -n {b['requests']}`, each {len(b['summary_runs'])} times alternately, best of: "
            f"`{b['summary_path']}` with a read token "
            f"{b['summary_rps']:.1f} req/s (runs {', '.join(f'{r:.1f}' for r in b['summary_runs'])}); "
            f"`/loadtest/baseline` {b['baseline_rps']:.1f} req/s "
            f"(runs {', '.join(f'{r:.1f}' for r in b['baseline_runs'])}): ratio {b['ratio']:.0%}.",
        ]
    if outcome.knee:
        k = outcome.knee
        lines += ["", "## Knee", "", f"{k['users']} users, {k['rps']} req/s: {k['reason']}.", ""]
        lines += ["| users | req/s | p95 ms (last 10 s) | failures in the step |", "|---|---|---|---|"]
        lines += [
            f"| {s['users']} | {s['rps']} | {s['p95_ms']} | {s['failures']} |" for s in k.get("steps", [])
        ]
    lines += [
        "",
        "## Processes",
        "",
        "| process | pid | RSS after warm-up MiB | end | growth | CPU % | flat (soak) |",
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for row in outcome.memory:
        if row.start is None:
            lines.append(f"| {row.process} | {row.pid} | (too few samples) | | | {row.cpu_percent:.1f} | |")
            continue
        # Judged in the soak only: elsewhere the run is too short for a warm-up.
        flat = ("yes" if row.flat else "**no**") if row.judged else "(not judged)"
        flat = flat if outcome.scenario == "soak" else ""
        lines.append(
            f"| {row.process} | {row.pid} | {row.start:.1f} | {row.end:.1f} | {row.growth:+.1f} | "
            f"{row.cpu_percent:.1f} | {flat} |"
        )
    if outcome.failures:
        lines += ["", "## Failures", "", "| method | name | occurrences | error |", "|---|---|---|---|"]
        lines += [
            f"| {f['method']} | `{f['name']}` | {f['occurrences']} | {f['error'][:300].replace('|', '/')} |"
            for f in outcome.failures
        ]
    return "\n".join(lines) + "\n"


# --- HTML with SVG charts -----------------------------------------------------------------------------

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    start = math.floor(low / step) * step
    return [
        start + i * step for i in range(int((high - start) / step) + 2) if start + i * step <= high + step
    ]


def svg_chart(title: str, series: dict[str, list[tuple[float, float]]], unit: str) -> str:
    """A line chart of ``series`` (label -> (seconds, value)), with axes and a legend, as inline SVG."""
    width, height, left, right, top, bottom = 760, 260, 60, 190, 28, 34
    points = [p for values in series.values() for p in values if math.isfinite(p[1])]
    if not points:
        return f"<p>{html.escape(title)}: no data.</p>"
    x_high = max(p[0] for p in points) or 1.0
    y_ticks = _ticks(0.0, max(p[1] for p in points) or 1.0)
    y_high = y_ticks[-1]
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(value: float) -> float:
        return left + value / x_high * plot_w

    def y(value: float) -> float:
        return top + plot_h - value / y_high * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    for tick in y_ticks:
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
    for tick in _ticks(0.0, x_high):
        if tick <= x_high:
            parts.append(
                f'<text x="{x(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick:g}</text>'
            )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle">seconds</text>'
        f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" '
        f'text-anchor="middle">{html.escape(unit)}</text>'
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
    )
    for index, (label, values) in enumerate(series.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in values if math.isfinite(v))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        legend_y = top + 12 + index * 15
        parts.append(
            f'<rect x="{left + plot_w + 12}" y="{legend_y - 8}" width="10" height="3" fill="{colour}"/>'
            f'<text x="{left + plot_w + 26}" y="{legend_y}">{html.escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _by_process(samples: Iterable[Sample], attribute: str) -> dict[str, list[tuple[float, float]]]:
    found: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for sample in samples:
        found[sample.process].append((sample.seconds, getattr(sample, attribute)))
    return dict(found)


def charts(outcome: Outcome) -> list[str]:
    points = outcome.points
    drawn = [
        svg_chart("Requests per second", {"req/s": [(p.seconds, p.rps) for p in points]}, "req/s"),
        svg_chart(
            "Latency (Locust, last 10 s)",
            {
                "p50": [(p.seconds, p.p50_ms) for p in points if p.p50_ms is not None],
                "p95": [(p.seconds, p.p95_ms) for p in points if p.p95_ms is not None],
            },
            "ms",
        ),
        svg_chart("Users", {"users": [(p.seconds, float(p.users)) for p in points]}, "users"),
        svg_chart("CPU of each process", _by_process(outcome.samples, "cpu_percent"), "CPU %"),
        svg_chart("Memory of each process", _by_process(outcome.samples, "rss_mib"), "RSS MiB"),
    ]
    if outcome.pool:
        drawn.append(
            svg_chart(
                "Database pool of the web processes",
                {
                    "in use": [(s.seconds, s.in_use) for s in outcome.pool],
                    "open": [(s.seconds, s.size) for s in outcome.pool],
                    "limit": [(s.seconds, s.max_size) for s in outcome.pool],
                },
                "connections",
            )
        )
    return drawn


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def html_report(outcome: Outcome) -> str:
    """report.md's content as HTML (its tables as tables), the charts after the verdicts."""
    body: list[str] = []
    table: list[list[str]] = []
    in_list = False

    def flush_table() -> None:
        if table:
            head, rows = table[0], table[2:]
            body.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>")
            body.extend("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
            body.append("</table>")
            table.clear()

    for line in markdown(outcome).splitlines():
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
            continue
        flush_table()
        if line.startswith("- "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{_inline(line[2:])}</li>")
            continue
        if in_list:
            body.append("</ul>")
            in_list = False
        if line.startswith("## "):
            if line == "## Endpoints":
                body.append(
                    "<h2>Over time</h2>" + "".join(f"<div>{chart}</div>" for chart in charts(outcome))
                )
            body.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line:
            body.append(f"<p>{_inline(line)}</p>")
    flush_table()
    if in_list:
        body.append("</ul>")
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:1em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;"
        "text-align:left}code{font-size:12px}"
    )
    title = f"Load scenario {outcome.scenario}"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
