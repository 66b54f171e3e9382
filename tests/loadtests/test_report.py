"""The load scenarios' judgement (loadtests/report.py, loadtests/knee.py): Locust's CSVs read into figures,
/metrics into the cache hit ratio and the pool, the verdicts and result.json, on small data made here.
The scenarios themselves run outside pytest (`make loadtest`; CI runs the smoke scenario)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from benchmarks import soak
from loadtests import report
from loadtests.knee import knee_reason

PERCENTILES = ["50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"]
STATS_HEADER = [
    "Type", "Name", "Request Count", "Failure Count", "Median Response Time", "Average Response Time",
    "Min Response Time", "Max Response Time", "Average Content Size", "Requests/s", "Failures/s",
    *PERCENTILES,
]  # fmt: skip
HISTORY_HEADER = [
    "Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", *PERCENTILES,
    "Total Request Count", "Total Failure Count", "Total Median Response Time", "Total Average Response Time",
    "Total Min Response Time", "Total Max Response Time", "Total Average Content Size",
]  # fmt: skip


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _stats_row(kind: str, name: str, counts: tuple[int, int], p50_95_99: str, rps: float) -> list[object]:
    """A row of the stats CSV: ``counts`` (requests, failures), ``p50_95_99`` as "12 40 90"."""
    requests, failures = counts
    p50, p95, p99 = p50_95_99.split()
    percentiles = [p50, p50, p50, p50, p95, p95, p99, p99, p99, p99, p99]
    return [kind, name, requests, failures, p50, 50, 5, 900, 1200, rps, 0.0, *percentiles]


def _stats(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "locust_stats.csv",
        STATS_HEADER,
        [
            _stats_row("GET", "/api/v1/projects/[key]/summary/", (300, 0), "12 40 90", 10.0),
            _stats_row("POST", "/projects", (100, 2), "60 180 400", 3.3),
            _stats_row("", "Aggregated", (400, 2), "20 120 300", 13.3),
        ],
    )


def _history_row(
    second: int, users: int, rates: tuple[float, float], p50: str, p95: str, *, name: str = "Aggregated"
) -> list[object]:
    """A row of the history CSV: ``rates`` (requests/s, failures/s), the p50 and p95 of the last 10 s."""
    rps, failures = rates
    percentiles = [p50, p50, p50, p50, p95, p95, p95, p95, p95, p95, p95]
    return [1_700_000_000 + second, users, "", name, rps, failures, *percentiles, 0, 0, 0, 0, 0, 0, 0]


def test_the_stats_csv_gives_each_endpoint_and_the_total(tmp_path: Path) -> None:
    endpoints, total = report.endpoints_read(_stats(tmp_path))

    assert [(e.method, e.name, e.requests, e.failures, e.p50_ms, e.p95_ms, e.p99_ms) for e in endpoints] == [
        ("GET", "/api/v1/projects/[key]/summary/", 300, 0, 12.0, 40.0, 90.0),
        ("POST", "/projects", 100, 2, 60.0, 180.0, 400.0),
    ]
    assert (total.name, total.requests, total.failures, total.p95_ms, total.rps) == (
        "Aggregated",
        400,
        2,
        120.0,
        13.3,
    )


def test_the_history_keeps_the_aggregated_rows_from_the_first_second_and_n_a_is_none(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "locust_stats_history.csv",
        HISTORY_HEADER,
        [
            _history_row(0, 2, (0.0, 0.0), "N/A", "N/A"),
            _history_row(1, 4, (8.0, 0.0), "30", "80", name="/dashboard"),
            _history_row(1, 4, (9.5, 0.5), "20", "70"),
        ],
    )

    points = report.history_read(path)

    assert [(p.seconds, p.users, p.rps, p.failures_per_second, p.p50_ms, p.p95_ms) for p in points] == [
        (0.0, 2, 0.0, 0.0, None, None),
        (1.0, 4, 9.5, 0.5, 20.0, 70.0),
    ]


def _total(requests: int = 400, failures: int = 0, p95: float | None = 99.0) -> report.Endpoint:
    return report.Endpoint("Aggregated", "", requests, failures, 20.0, p95, 300.0, 13.3)


def test_p95_must_be_below_the_target() -> None:
    assert report.verdict_p95(_total(p95=99.0)).passed is True
    assert report.verdict_p95(_total(p95=100.0)).passed is False
    assert report.verdict_p95(_total(p95=None)).passed is False


def test_one_failed_request_or_one_other_error_fails_zero_errors() -> None:
    assert report.verdict_errors(_total(), []).passed is True
    failed = report.verdict_errors(_total(failures=1), [])
    assert (failed.passed, failed.evidence) == (False, "1 of 400 requests failed")
    logged = report.verdict_errors(_total(), ["gunicorn logged 1 errors: Traceback"])
    assert (logged.passed, logged.evidence) == (
        False,
        "0 of 400 requests failed; gunicorn logged 1 errors: Traceback",
    )


def test_the_summary_needs_half_the_baseline_throughput_and_a_missing_baseline_fails() -> None:
    def baseline(summary: float, bare: float) -> dict[str, float]:
        return {"summary_rps": summary, "baseline_rps": bare, "ratio": summary / bare}

    assert report.verdict_ratio(baseline(300, 600)).passed is True
    assert report.verdict_ratio(baseline(149, 600)).passed is False
    missing = report.verdict_ratio(None)
    assert (missing.passed, missing.evidence) == (
        False,
        "not measured: /loadtest/baseline did not answer 200",
    )


def test_the_knee_is_the_first_step_with_errors_or_a_p95_past_one_second() -> None:
    assert knee_reason(1000.0, 0) is None
    assert knee_reason(None, 0) is None
    assert knee_reason(1100.0, 0) == "p95 1100 ms > 1000 ms"
    assert knee_reason(40.0, 3) == "3 failed requests"


def test_the_history_shows_the_knee_at_the_first_step_past_the_limit() -> None:
    points = [
        report.Point(0, 5, 40.0, 0.0, 20.0, 90.0),
        report.Point(20, 10, 70.0, 0.0, 60.0, 400.0),
        report.Point(40, 15, 75.0, 0.0, 300.0, 1300.0),
        report.Point(60, 20, 70.0, 0.0, 500.0, 2500.0),
    ]

    assert report.knee_from_history(points, step_seconds=20) == {
        "users": 15, "rps": 75.0, "p95_ms": 1300.0, "reason": "p95 1300 ms > 1000 ms",
    }  # fmt: skip
    assert report.knee_from_history(points[:2], step_seconds=20) is None


def test_a_knee_the_shape_wrote_passes_and_none_fails() -> None:
    knee = {
        "users": 45,
        "rps": 61.2,
        "p95_ms": 1200,
        "failures": 0,
        "reached": True,
        "reason": "p95 1200 ms > 1000 ms",
    }

    assert (
        report.verdict_knee(knee).evidence
        == "45 users, 61.2 req/s, p95 1200 ms, 0 failures: p95 1200 ms > 1000 ms"
    )
    assert report.verdict_knee(None).passed is False


def _samples(process: str, start: float, per_minute: float) -> list[soak.Sample]:
    return [soak.Sample(s, process, 7, start + per_minute * s / 60, 5.0) for s in range(0, 601, 10)]


def test_memory_grown_past_the_bound_fails_and_redis_is_not_judged() -> None:
    samples = _samples("gunicorn worker 1", 100, 2) + _samples("redis-server", 10, 5)
    rows = soak.memory_rows(samples, {"gunicorn worker 1": True, "redis-server": False}, 60.0, 600.0)

    verdict = report.verdict_memory(rows)

    assert (verdict.passed, verdict.evidence) == (False, "gunicorn worker 1 grew 17.3 MiB (bound 10.2)")
    flat = report.verdict_memory(soak.memory_rows(_samples("celery pool 1", 200, 1), {}, 60.0, 600.0))
    assert (flat.passed, flat.evidence) == (
        True,
        "1 processes within max(10 MiB, 10 %) of their RSS after the warm-up",
    )


def test_p95_stable_compares_the_median_p95_of_the_last_third_with_the_first() -> None:
    def points(last_p95: float) -> list[report.Point]:
        return [
            report.Point(float(s), 20, 10.0, 0.0, 20.0, 100.0 if s < 340 else last_p95)
            for s in range(60, 601, 10)
        ]

    assert report.verdict_p95_stable(points(150.0), warmup=60).passed is True
    unstable = report.verdict_p95_stable(points(160.0), warmup=60)
    assert (unstable.passed, unstable.evidence) == (
        False, "median 10-s p95: first third 100 ms, last third 160 ms (1.60 x)",
    )  # fmt: skip
    assert report.verdict_p95_stable(points(100.0)[:2], warmup=60).passed is False


METRICS_BEFORE = """# HELP apm_cache_lookups_total Lookups
# TYPE apm_cache_lookups_total counter
apm_cache_lookups_total{family="summary",result="hit"} 10.0
apm_cache_lookups_total{family="summary",result="miss"} 5.0
apm_db_pool_connections_in_use{alias="default"} 0.0
"""
METRICS_AFTER = """apm_cache_lookups_total{family="summary",result="hit"} 100.0
apm_cache_lookups_total{family="summary",result="miss"} 15.0
apm_cache_lookups_total{family="portfolio",result="hit"} 30.0
apm_cache_lookups_total{family="portfolio",result="waited"} 10.0
apm_db_pool_connections_in_use{alias="default"} 3.0
apm_db_pool_connections_in_use{alias="replica"} 1.0
apm_db_pool_size{alias="default"} 6.0
apm_db_pool_max_size{alias="default"} 16.0
apm_db_pool_requests_waiting{alias="default"} 0.0
"""


def test_the_cache_hit_ratio_is_the_hits_of_the_run_over_its_lookups() -> None:
    lookups = report.cache_lookups(report.metrics_parse(METRICS_BEFORE), report.metrics_parse(METRICS_AFTER))

    assert lookups == {"hit": 120.0, "miss": 10.0, "waited": 10.0}
    assert report.cache_hit_ratio(lookups) == 120 / 140
    assert report.cache_hit_ratio({}) is None


def test_the_pool_adds_up_its_gauges_over_aliases_and_scrapes() -> None:
    sample = report.pool_sample(10.0, report.metrics_parse(METRICS_AFTER))
    assert (sample.in_use, sample.size, sample.max_size, sample.waiting) == (4.0, 6.0, 16.0, 0.0)

    summary = report.pool_summary([sample, report.PoolSample(20.0, 2.0, 8.0, 16.0, 1.0)])

    assert summary == {
        "samples": 2, "max_in_use": 4.0, "mean_in_use": 3.0,
        "max_open": 8.0, "max_size": 16.0, "max_waiting": 1.0,
    }  # fmt: skip


def _outcome(tmp_path: Path, scenario: str = "load") -> report.Outcome:
    endpoints, total = report.endpoints_read(_stats(tmp_path))
    baseline = {
        "summary_rps": 300.0, "baseline_rps": 500.0, "ratio": 0.6,
        "summary_path": "/api/v1/projects/APM/summary/", "requests": 1000,
        "summary_runs": [290.0, 300.0], "baseline_runs": [500.0, 480.0],
    }  # fmt: skip
    return report.Outcome(
        scenario=scenario,
        finished_at="2026-12-01T22:00:00+00:00",
        code_version="abc1234",
        command="make loadtest SCENARIO=load",
        setup_notes=[],
        endpoints=endpoints,
        total=total,
        seconds=180.0,
        verdicts=[
            report.verdict_errors(total, []),
            report.verdict_p95(total),
            report.verdict_ratio(baseline),
        ],
        points=[report.Point(float(s), 50, 12.0, 0.0, 20.0, 90.0) for s in range(0, 180, 10)],
        samples=_samples("gunicorn worker 1", 100, 0),
        memory=soak.memory_rows(_samples("gunicorn worker 1", 100, 0), {}, 0.0, 180.0),
        pool=[report.PoolSample(10.0, 2.0, 6.0, 16.0, 0.0)],
        lookups={"hit": 90.0, "miss": 10.0},
        baseline=baseline,
        failures=[{"method": "POST", "name": "/projects", "error": "500: boom", "occurrences": "2"}],
        load_average=3.5,
    )


def test_result_json_has_the_keys_perf_checklist_reads_and_every_figure(tmp_path: Path) -> None:
    outcome = _outcome(tmp_path)

    result = json.loads(json.dumps(report.result_json(outcome)))

    assert set(result) >= {
        "scenario", "finished_at", "passed", "targets", "code_version", "verdicts", "endpoints",
        "total", "cache_hit_ratio", "pool", "knee", "baseline",
    }  # fmt: skip
    assert (result["scenario"], result["passed"]) == ("load", False)  # 2 failed requests, p95 120 ms
    assert result["targets"] == {"errors": 0, "p95_ms_below": 100.0, "summary_vs_baseline_at_least": 0.5}
    assert [v["passed"] for v in result["verdicts"]] == [False, False, True]
    assert result["endpoints"][0] == {
        "name": "/api/v1/projects/[key]/summary/", "method": "GET", "requests": 300, "failures": 0,
        "p50_ms": 12.0, "p95_ms": 40.0, "p99_ms": 90.0, "rps": 10.0,
    }  # fmt: skip
    assert result["total"]["requests"] == 400
    assert result["cache_hit_ratio"] == 0.9
    assert result["baseline"]["ratio"] == 0.6
    assert result["knee"] is None


def test_the_reports_carry_the_verdicts_the_tables_and_the_charts(tmp_path: Path) -> None:
    outcome = _outcome(tmp_path)

    text = report.markdown(outcome)
    page = report.html_report(outcome)

    assert text.startswith("# Load scenario load: FAILED\n")
    assert "- **FAILED**: p95 < 100 ms: p95 over all 400 requests: 120.0 ms (Locust)" in text
    assert "| GET | `/api/v1/projects/[key]/summary/` | 300 | 0 | 12 | 40 | 90 | 10.0 |" in text
    assert "ratio 60%" in text
    assert page.count("<svg") == 6  # req/s, latency, users, CPU, memory, pool
    assert "<td><code>/projects</code></td>" in page
