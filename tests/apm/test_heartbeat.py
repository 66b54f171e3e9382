"""Liveness of the worker and beat from a heartbeat file, never from the broker (apm/heartbeat.py).

Real ``celery -A config worker`` and ``celery -A config beat`` processes with ``APM_HEARTBEAT_FILE``
set, on a redis-server of the test's own: the file appears and keeps being touched; with the broker
stopped it stays fresh (liveness must not restart workers for an outage outside them); with the process
frozen (SIGSTOP) ``python -m apm.heartbeat`` says stale once ``--max-age`` has passed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.monitoring.test_cache_outage import RedisServer, redis_server  # noqa: F401
from tests.processes import (
    ROOT,
    celery_beat_start,
    celery_worker_start,
    celery_worker_stop,
    database_url,
    wait_for,
)

BEAT_SECONDS = 0.5


def probe(path: Path, max_age: float | str) -> subprocess.CompletedProcess[str]:
    """The liveness probe exactly as Kubernetes runs it (k8s/worker-deployment.yaml)."""
    return subprocess.run(
        [sys.executable, "-m", "apm.heartbeat", str(path), "--max-age", str(max_age)],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_probe_says_fresh_stale_or_missing(tmp_path: Path):
    path = tmp_path / "heartbeat"
    missing = probe(path, 10)
    assert (missing.returncode, missing.stderr.strip()) == (1, f"{path}: missing")

    path.touch()
    assert probe(path, 10).returncode == 0

    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    stale = probe(path, 10)
    assert stale.returncode == 1
    assert "stale, touched 3600 s ago (max 10 s)" in stale.stderr


def test_a_file_dated_in_the_future_is_stale_beyond_a_few_seconds(tmp_path: Path):
    path = tmp_path / "heartbeat"
    path.touch()
    in_an_hour = time.time() + 3600
    os.utime(path, (in_an_hour, in_an_hour))
    future = probe(path, 60)
    assert future.returncode == 1
    assert "stale, its time is 3600 s in the future" in future.stderr

    # Two clocks read a moment apart may disagree slightly: that is still now.
    in_a_second = time.time() + 1
    os.utime(path, (in_a_second, in_a_second))
    assert probe(path, 60).returncode == 0


def test_a_directory_at_the_path_is_not_a_heartbeat(tmp_path: Path):
    path = tmp_path / "heartbeat"
    path.mkdir()  # fresh: just created
    directory = probe(path, 60)
    assert (directory.returncode, directory.stderr.strip()) == (1, f"{path}: not a regular file")


def test_a_path_that_cannot_be_read_is_one_line_not_a_traceback(tmp_path: Path):
    (tmp_path / "file").write_text("a file where a directory should be")
    path = tmp_path / "file" / "heartbeat"
    unreadable = probe(path, 60)
    assert unreadable.returncode == 1
    assert unreadable.stderr.strip() == f"{path}: cannot be read: Not a directory"


@pytest.mark.parametrize("max_age", ["nan", "inf", "-inf", "-5", "0", "soon"])
def test_a_max_age_that_is_not_a_finite_positive_number_is_a_usage_error(tmp_path: Path, max_age: str):
    path = tmp_path / "heartbeat"
    path.touch()
    refused = probe(path, max_age)
    assert refused.returncode == 2
    assert "--max-age" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_probe_imports_neither_django_nor_celery(tmp_path: Path):
    """The kubelet runs it every period inside the pod's memory limit: it must stay a few milliseconds."""
    (tmp_path / "heartbeat").touch()
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, sys\n"
            f"sys.argv = ['apm.heartbeat', {str(tmp_path / 'heartbeat')!r}, '--max-age', '10']\n"
            "try:\n    runpy.run_module('apm.heartbeat', run_name='__main__')\n"
            "except SystemExit as exit:\n    status = exit.code\n"
            "loaded = {name.split('.')[0] for name in sys.modules}\n"
            "print(status, sorted(loaded & {'django', 'celery', 'kombu'}))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert check.stdout.strip() == "0 []"


def touched_again(path: Path) -> bool:
    """Whether ``path`` is touched after now (it exists and its time moves on within a few beats)."""
    if not path.exists():
        return False
    before = path.stat().st_mtime
    deadline = time.monotonic() + 10 * BEAT_SECONDS + 2
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime > before:
            return True
        time.sleep(0.1)
    return False


def fresh_throughout(path: Path, max_age: float, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = probe(path, max_age)
        assert answer.returncode == 0, answer.stderr
        time.sleep(0.5)


def stale_once_frozen(process: subprocess.Popen[bytes], path: Path, max_age: float) -> None:
    os.kill(process.pid, signal.SIGSTOP)
    try:
        time.sleep(max_age + 1.5)
        answer = probe(path, max_age)
        assert answer.returncode == 1
        assert "stale" in answer.stderr
    finally:
        os.kill(process.pid, signal.SIGCONT)


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            celery_worker_stop(process)


def test_a_worker_beats_through_a_broker_outage_and_stops_beating_when_frozen(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    stopped: list[subprocess.Popen[bytes]],
):
    path = tmp_path / "worker" / "heartbeat"  # the directory too is made by the worker
    max_age = 3.0
    worker = celery_worker_start(
        queue=f"apm-heartbeat-{os.getpid()}",
        pool="prefork",
        env={
            "CELERY_BROKER_URL": redis_server.url,
            "CELERY_RESULT_BACKEND": redis_server.url,
            "APM_HEARTBEAT_FILE": str(path),
            "APM_HEARTBEAT_SECONDS": str(BEAT_SECONDS),
        },
    )
    stopped.append(worker)
    wait_for(path.exists, timeout=60, what="the worker's heartbeat file")
    assert touched_again(path)

    redis_server.stop()  # the worker's consumer now reconnects, again and again
    fresh_throughout(path, max_age, seconds=2 * max_age)
    assert worker.poll() is None

    stale_once_frozen(worker, path, max_age)
    assert touched_again(path)  # thawed, it beats again


@pytest.mark.django_db(transaction=True)
def test_beat_beats_on_every_tick_through_a_broker_outage_and_stops_when_frozen(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    stopped: list[subprocess.Popen[bytes]],
):
    path = tmp_path / "beat-heartbeat"
    # A due task meets the stopped broker within a tick (the publish gives up in seconds), so the
    # probe's age allows for one such tick beside django-celery-beat's five-second sleep.
    max_age = 15.0
    log = tmp_path / "beat.log"
    beat = celery_beat_start(
        env={
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": redis_server.url,
            "CELERY_RESULT_BACKEND": redis_server.url,
            "APM_HEARTBEAT_FILE": str(path),
        },
        log=log,
    )
    stopped.append(beat)
    wait_for(path.exists, timeout=60, what=f"beat's heartbeat file ({log.read_text()[-2000:]})")
    first = path.stat().st_mtime
    wait_for(lambda: path.stat().st_mtime > first, timeout=15, what="beat's next tick")

    redis_server.stop()
    # Due at once and every 2 s from now on, whatever the minute: beat meets the stopped broker on the
    # next tick (connecting, if nothing was sent before, at growing intervals; else publishing).
    PeriodicTask.objects.create(
        name="due during the outage",
        task="monitoring.heartbeat",
        interval=IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS),
    )
    # Long enough for beat's retries to outgrow max_age together (2 + 4 + 6 + 8 + 10 s).
    fresh_throughout(path, max_age, seconds=32)
    assert beat.poll() is None, log.read_text()[-3000:]
    assert "beat: Connection error" in log.read_text() or "Error" in log.read_text(), log.read_text()[-3000:]

    stale_once_frozen(beat, path, max_age)
