"""The soak's judgement (benchmarks/soak.py): what counts as growing memory, an error and unstable p95,
and which processes it samples. The soak itself is a benchmark run by hand (docs/performance.md)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from benchmarks import soak


def _run(
    samples: list[soak.Sample],
    *,
    judged: dict[str, bool] | None = None,
    records: list[soak.Record] | None = None,
) -> soak.Run:
    """A 10-minute soak with a 1-minute warm-up that measured ``samples`` and ``records``."""
    sampler = soak.Sampler(services=[], started=0.0)
    sampler.samples = samples
    sampler.judged = judged or {}
    recorder = soak.Recorder(started=0.0)
    recorder.records = records or []
    options = argparse.Namespace(minutes=10, users=1, workers=2, threads=4, concurrency=2)
    return soak.Run(options, recorder, sampler, [], 600.0, 60.0, False, "test", [])


def _growing(process: str, *, start: float, per_minute: float, first: float = 0.0) -> list[soak.Sample]:
    """A sample every 10 s from ``first`` to the end, RSS growing ``per_minute`` MiB a minute."""
    return [
        soak.Sample(seconds, process, 100, start + per_minute * seconds / 60, 1.0)
        for seconds in range(int(first), 601, soak.SAMPLE_SECONDS)
    ]


def test_memory_that_grows_past_the_bound_is_not_flat() -> None:
    # 2 MiB a minute after the warm-up: from 102.3 MiB (the mean of the first three samples after it)
    # to 119.7 (of the last three), over the bound of max(10 MiB, 10 % of 102.3).
    run = _run(_growing("gunicorn worker 1", start=100, per_minute=2))

    assert soak.memory_table(run) == ["gunicorn worker 1 grew 17.3 MiB (bound 10.2)"]
    assert "| gunicorn worker 1 | 100 | 102.3 | 111.0 | 119.7 | +17.3 | +20.00 | 1.0 | **no** |" in run.lines


def test_memory_within_the_bound_is_flat_and_redis_is_not_judged() -> None:
    samples = _growing("celery pool 1", start=200, per_minute=1)  # +8 MiB, bound 20 MiB (10 %)
    samples += _growing("redis-server", start=10, per_minute=5)
    run = _run(samples, judged={"celery pool 1": True, "redis-server": False})

    assert soak.memory_table(run) == []
    assert any(line.startswith("| redis-server ") and "(not judged)" in line for line in run.lines)


def test_slope_is_in_mib_per_ten_minutes() -> None:
    points = [(float(seconds), 100 + seconds / 60) for seconds in range(0, 601, 10)]  # 1 MiB a minute

    assert round(soak.slope_per_10_minutes(points), 6) == 10.0


def _records(milliseconds_first: float, milliseconds_last: float) -> list[soak.Record]:
    """One request a second: the first third after the warm-up at one latency, the rest at another."""
    latency = {second: milliseconds_first if second < 240 else milliseconds_last for second in range(60, 600)}
    return [soak.Record(float(second), "api summary", "/x", ms, None) for second, ms in latency.items()]


def test_p95_of_the_last_third_over_one_and_a_half_times_the_first_fails() -> None:
    run = _run(_growing("celery beat", start=100, per_minute=0), records=_records(100, 160))

    assert soak.verdicts(run, [], {}) is False
    assert "- p95 stable (last third 160 ms / first third 100 ms = 1.60, at most 1.5): FAILED" in run.lines


def test_a_stable_soak_without_errors_passes() -> None:
    run = _run(_growing("celery beat", start=100, per_minute=0), records=_records(100, 140))

    assert soak.verdicts(run, [], {}) is True
    assert "- zero errors: passed" in run.lines


def test_a_failed_request_a_logged_error_or_a_replaced_process_is_an_error() -> None:
    records = _records(100, 100)
    records[100].error = "GET /x: 500"
    samples = _growing("gunicorn worker 1", start=100, per_minute=0)
    samples += _growing("gunicorn worker 3", start=100, per_minute=0, first=300)  # a worker restarted
    run = _run(samples, records=records)

    assert soak.verdicts(run, [], {"celery worker": ['{"level": "error", "event": "task failed"}']}) is False
    assert "- zero errors: FAILED (3)" in run.lines
    assert "gunicorn worker 3 appeared 300 s into the traffic: a process was replaced" in run.lines


def test_the_sampled_tree_is_the_root_and_its_children_running_the_same_program() -> None:
    # A Python process with a Python child (a worker) and a `sleep` child (as a git process would be).
    script = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "subprocess.Popen(['sleep', '60']); time.sleep(60)"
    )
    root = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while len(children := _children(root.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        python = os.path.realpath(sys.executable)
        python_child = next(pid for pid in children if os.readlink(f"/proc/{pid}/exe") == python)
        sleep_child = next(pid for pid in children if pid != python_child)

        found = soak.tree(root.pid)

        assert sorted(found) == sorted([root.pid, python_child])
        assert sleep_child not in found
    finally:
        os.killpg(root.pid, signal.SIGKILL)
        root.wait()


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    return [int(child) for child in open(path).read().split()] if os.path.exists(path) else []
