"""Running APM's own commands in a separate process, as an operator would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from django.db import connection

from config import topology
from tests import isolation

ROOT = Path(__file__).resolve().parents[1]
# APM's web process as the image starts it.
GUNICORN = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "config.wsgi:application"]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (for a server the test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(
    command: list[str], env: dict[str, str], *, log: Path, url: str, what: str, timeout: float = 60
) -> subprocess.Popen[bytes]:
    """Start ``command`` (a server) with exactly ``env``, its output in ``log``, once ``url`` answers.

    Any HTTP answer counts (a protected endpoint answers 401 while serving); a server still loading
    may accept and not answer yet, which counts as not yet. Fails with the log's end if it exits.
    """
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)

    def answers() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            requests.get(url, timeout=10)
        except (requests.ConnectionError, requests.Timeout):
            return False
        return True

    try:
        wait_for(answers, timeout=timeout, what=what)
    except BaseException:
        process_stop(process)
        raise
    return process


def gunicorn_serve(
    env: dict[str, str], *, port: int, log: Path, workers: int = 1, threads: int = 2, timeout: float = 60
) -> subprocess.Popen[bytes]:
    """APM served by gunicorn as in production (gunicorn.conf.py) on 127.0.0.1:``port``, with ``env``
    and ``workers`` processes of ``threads`` threads, once /healthz answers."""
    return serve(
        GUNICORN,
        {
            **env,
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_WORKERS": str(workers),
            "GUNICORN_THREADS": str(threads),
        },
        log=log,
        url=f"http://127.0.0.1:{port}/healthz",
        what="gunicorn serving APM",
        timeout=timeout,
    )


def process_stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server or worker as its supervisor would (SIGTERM), killing it if it hangs."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run manage.py in a clean environment plus ``env`` (no DATABASE_URL etc. leaking from the suite).

    A broker from tests.isolation brings its key prefix (read by config.settings.test only).
    """
    base = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG", "SYSTEMROOT"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **isolation.worker_environment(env.get("CELERY_BROKER_URL", "")), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# Production's settings as k8s/ deploys them (secret, hosts, export bucket, metrics token, broker); a
# test that is about one of them overrides it, and an empty value leaves it unset.
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "k" * 20 + "-production-secret-" + "q" * 40,
    "DJANGO_ALLOWED_HOSTS": "apm.example.com",
    "AWS_STORAGE_BUCKET_NAME": "apm-exports",
    "AWS_S3_ENDPOINT_URL": "https://objects.example.com",
    "APM_METRICS_TOKEN": "metrics-token-of-production-32ch",
    "CELERY_BROKER_URL": "redis://broker.example.com:6379/0",
}


def production_check_deploy(**env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py check --deploy --fail-level WARNING`` on production's settings, changed by ``env``."""
    variables = {key: value for key, value in {**PRODUCTION_ENV, **env}.items() if value}
    return manage("check", "--deploy", "--fail-level", "WARNING", **variables)


def worker_queues(queue: str, env: dict[str, str], *, ingestion: bool = True) -> str:
    """``-Q`` of a worker consuming ``queue``, and with ``ingestion`` the ingestion queue its ``env``
    routes ingestion to (config/topology.py), as one development worker consumes both.

    The ingestion queue is added only when ``env`` names the worker's queues (CELERY_TASK_DEFAULT_QUEUE
    or CELERY_INGESTION_QUEUE, as ``worker_database_env`` does): a worker of a test that does not never
    consumes the shared default ``ingestion`` (RabbitMQ has no key prefix to keep runs apart).
    """
    queues = [queue]
    named = env.get("CELERY_INGESTION_QUEUE") or (
        topology.ingestion_queue_default(env["CELERY_TASK_DEFAULT_QUEUE"])
        if env.get("CELERY_TASK_DEFAULT_QUEUE")
        else ""
    )
    if ingestion and named and named not in queues:
        queues.append(named)
    return ",".join(queues)


def celery_worker_start(
    *,
    queue: str,
    env: dict[str, str],
    ingestion: bool = True,
    pool: str = "solo",
    concurrency: int = 0,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``celery -A config worker`` as production does, consuming ``queue`` (and the ingestion
    queue ``env`` names, unless ``ingestion`` is false: ``worker_queues``), with ``pool`` (one process:
    solo) of ``concurrency`` (0: Celery's default).

    ``env`` adds to a clean environment (broker, result backend, database ...). A broker from
    tests.isolation brings its key prefix: the worker's queues, broadcasts and results are the test's.
    Each worker has a node name of its own (tests.isolation): on RabbitMQ a second ``celery@<host>``
    cannot open the first one's exclusive control queue. With ``log``, what it says (from ``info`` up)
    goes to that file, for a test to show when it fails.
    """
    output = log.open("ab") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            pool,
            "--hostname",
            isolation.worker_nodename(),
            "-Q",
            worker_queues(queue, env, ingestion=ingestion),
            "-l",
            "info" if log is not None else "warning",
            *(["--concurrency", str(concurrency)] if concurrency else []),
        ],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(ROOT)),
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            **isolation.worker_environment(env.get("CELERY_BROKER_URL", "")),
            **env,
        },
        stdout=output,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
    )
    if not isinstance(output, int):
        output.close()  # the worker has its own copy
    return process


def celery_beat_start(*, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``celery -A config beat`` as production does (the database schedule, apm.beat), logging to
    ``log``. ``env`` adds to a clean environment: it needs a migrated database and a broker."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "info"],
            cwd=ROOT,
            env={
                "PATH": os.environ.get("PATH", ""),
                "HOME": os.environ.get("HOME", str(ROOT)),
                "DJANGO_SETTINGS_MODULE": "config.settings.test",
                **isolation.worker_environment(env.get("CELERY_BROKER_URL", "")),
                **env,
            },
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def database_url() -> str:
    """The URL of the database the current test runs on, for a worker process to use the same rows."""

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connection.vendor]
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"{scheme}://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT']}/{db['NAME']}"


def wait_for(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``timeout`` seconds."""

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def worker_database_env(*, home: str, broker: str, queue: str) -> dict[str, str]:
    """What a worker needs to work on the current test's database through ``broker``, consuming ``queue``
    (and routing ingestion to ``<queue>.ingestion``, or ``ingestion`` for ``celery``: config/topology.py)."""
    return {
        "HOME": home,
        "DATABASE_URL": database_url(),
        "DATABASE_POOL_SIZE": "1",
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
    }


def celery_worker_stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a worker as its supervisor would (SIGTERM, a warm shutdown), killing it if it hangs."""
    process_stop(process)
