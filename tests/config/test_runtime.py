"""The shape of a deployment the settings enforce: a broker in production, results apart from the cache,
and database pools sized by the threads of the process that uses them (docs/operations.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from celery import Celery

from apm.checks import redis_location
from config import topology
from tests.conftest import require_service
from tests.isolation import celery_client, redis_broker
from tests.processes import ROOT, celery_worker_start, celery_worker_stop, manage

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "k" * 20 + "-production-secret-" + "q" * 40,
    "DJANGO_ALLOWED_HOSTS": "apm.example.com",
}
BROKER_URL = "redis://broker.example.com:6379/0"
# A PostgreSQL URL that is never connected to: checks and settings only read it.
POSTGRES_URL = "postgres://apm@127.0.0.1:1/apm"


def test_production_refuses_to_start_without_a_broker():
    result = manage("check", **PRODUCTION)

    assert result.returncode == 2
    assert result.stderr.startswith("Configuration error: CELERY_BROKER_URL is not set")
    assert "Traceback" not in result.stderr


def test_production_refuses_eager_tasks():
    result = manage("check", CELERY_BROKER_URL=BROKER_URL, CELERY_TASK_ALWAYS_EAGER="true", **PRODUCTION)

    assert result.returncode == 2
    assert "CELERY_TASK_ALWAYS_EAGER=true runs every task inside the web process" in result.stderr


def test_production_on_rabbitmq_asks_for_a_result_backend():
    broker = "amqp://apm:secret@rabbitmq.example.com:5672//"
    refused = manage("check", CELERY_BROKER_URL=broker, **PRODUCTION)
    accepted = manage(
        "check",
        CELERY_BROKER_URL=broker,
        CELERY_RESULT_BACKEND="redis://results.example.com:6379/0",
        **PRODUCTION,
    )

    assert refused.returncode == 2
    assert "CELERY_RESULT_BACKEND is not set" in refused.stderr
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def _settings(*names: str, **env: str) -> list[str]:
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        f"from django.conf import settings as s; print(*[getattr(s, name) for name in {list(names)!r}])",
        **env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_results_go_to_the_brokers_redis_and_never_to_the_caches():
    assert _settings(
        "CELERY_RESULT_BACKEND",
        REDIS_URL="redis://cache.example.com:6379/0",
        CELERY_BROKER_URL="redis://broker.example.com:6379/1",
    ) == ["redis://broker.example.com:6379/1"]
    # Without a broker (the embedded default, eager) results stay in the process, even with a cache.
    assert _settings("CELERY_RESULT_BACKEND", REDIS_URL="redis://cache.example.com:6379/0") == [
        "cache+memory://"
    ]


def test_a_result_backend_on_the_caches_redis_database_is_an_error_in_production():
    shared = manage(
        "check",
        REDIS_URL="redis://redis.example.com:6379/0",
        CELERY_BROKER_URL=BROKER_URL,
        CELERY_RESULT_BACKEND="redis://redis.example.com/0",  # the same server and database, spelt otherwise
        **PRODUCTION,
    )
    apart = manage(
        "check",
        REDIS_URL="redis://redis.example.com:6379/0",
        CELERY_BROKER_URL=BROKER_URL,
        CELERY_RESULT_BACKEND="redis://redis.example.com:6379/2",
        **PRODUCTION,
    )
    development = manage(
        "check", REDIS_URL="redis://127.0.0.1:6379/0", CELERY_RESULT_BACKEND="redis://127.0.0.1:6379/0"
    )

    assert shared.returncode == 1
    assert "(apm.E001) CELERY_RESULT_BACKEND is the cache's Redis database" in shared.stderr
    assert apart.returncode == 0, apart.stdout + apart.stderr
    assert development.returncode == 0
    assert "WARNINGS:" in development.stderr
    assert "apm.E001" in development.stderr


@pytest.mark.parametrize(
    ("cache", "results"),
    [
        ("redis://127.0.0.1:6379/4", "redis://localhost:6379/4"),
        ("redis://localhost:6379/4", "redis://[::1]:6379/4"),
        ("redis://127.0.0.1:6379/4", "redis://127.0.0.1:6379/0?db=4"),  # the query's db wins, as in redis-py
        ("redis://127.0.0.1:6379/?db=4", "redis://LOCALHOST/4"),
    ],
)
def test_the_caches_redis_database_is_recognised_however_it_is_spelt(cache: str, results: str):
    assert redis_location(cache) == redis_location(results)
    shared = manage(
        "check", REDIS_URL=cache, CELERY_BROKER_URL=BROKER_URL, CELERY_RESULT_BACKEND=results, **PRODUCTION
    )
    assert shared.returncode == 1
    assert "(apm.E001) CELERY_RESULT_BACKEND is the cache's Redis database" in shared.stderr


def test_other_databases_and_hosts_are_apart_from_the_cache():
    assert redis_location("redis://127.0.0.1:6379/0?db=4") != redis_location("redis://127.0.0.1:6379/0")
    assert redis_location("redis://localhost:6379/4") != redis_location("redis://10.0.0.7:6379/4")
    assert redis_location("redis://localhost:6379/4") != redis_location("redis://localhost:6380/4")


@pytest.mark.parametrize("expire", ["-5", "0", "abc", "1.5"])
def test_a_signed_link_lifetime_that_is_not_a_positive_number_refuses_to_start(expire: str):
    result = manage("check", AWS_QUERYSTRING_EXPIRE=expire)

    assert result.returncode == 2
    assert result.stderr.startswith(
        f"Configuration error: AWS_QUERYSTRING_EXPIRE is a number of seconds above 0 (60 by default), "
        f"not {expire!r}."
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "name",
    [
        "GUNICORN_THREADS",
        "APM_PROCESS_THREADS",
        "DATABASE_POOL_MAX_SIZE",
        "AWS_S3_READ_TIMEOUT",
        "AWS_S3_MAX_ATTEMPTS",
    ],
)
def test_a_count_that_is_not_a_number_refuses_to_start(name: str):
    result = manage("check", **{name: "abc"})

    assert result.returncode == 2
    assert result.stderr.startswith(f"Configuration error: {name} is a whole number, not 'abc'.")
    assert "Traceback" not in result.stderr


# --- The database pool, by process (docs/operations.md, "Database connections") ---------------------


def production_process(script: str, *args: str, **env: str) -> list[str]:
    """What ``script`` printed, as words, run by a Python process of APM on production settings with
    ``env`` (``args`` in its ``sys.argv[1:]``)."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            **PRODUCTION,
            "CELERY_BROKER_URL": BROKER_URL,
            "DATABASE_URL": POSTGRES_URL,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


# A process of gunicorn reads gunicorn.conf.py before it loads the application (and so Django).
_AFTER_GUNICORN_CONF = """
import runpy, sys, django
if sys.argv[1] == "web":
    runpy.run_path("gunicorn.conf.py")
django.setup()
"""

_POOL = """
from django.db import connections
pool = connections["default"].settings_dict["OPTIONS"]["pool"]
print(pool["min_size"], pool["max_size"])
"""


def gunicorn_pool(**env: str) -> tuple[int, int]:
    """The pool of a gunicorn worker process under ``env`` (production settings, gunicorn.conf.py read)."""
    minimum, maximum = production_process(_AFTER_GUNICORN_CONF + _POOL, "web", **env)[-2:]
    return int(minimum), int(maximum)


_STORAGE_CLIENT = """
from django.core.files.storage import storages
config = storages["default"].client_config
print(config.read_timeout, config.retries["total_max_attempts"])
"""


def storage_client(process: str, **env: str) -> tuple[int, int]:
    """(read timeout, attempts) of the bucket's client in a ``web`` process (gunicorn.conf.py read
    first) or a ``worker``, under production settings and ``env``."""
    bucket = {"AWS_STORAGE_BUCKET_NAME": "apm-exports", "AWS_S3_REGION_NAME": "eu-central-1"}
    seconds, attempts = production_process(_AFTER_GUNICORN_CONF + _STORAGE_CLIENT, process, **bucket, **env)[
        -2:
    ]
    return int(seconds), int(attempts)


def test_a_web_process_gives_up_on_a_silent_store_sooner_than_a_worker():
    # A download holds one of gunicorn's few threads; an export holds a worker that can wait.
    assert storage_client("web") == (5, 1)
    assert storage_client("worker") == (10, 2)
    assert storage_client("web", AWS_S3_READ_TIMEOUT="20", AWS_S3_MAX_ATTEMPTS="3") == (20, 3)


_BACKUP_STORAGE = """
from dbbackup.storage import get_storage
storage = get_storage().storage
print(type(storage).__name__, getattr(storage, "bucket_name", None), getattr(storage, "location", None))
"""


def test_production_backs_up_to_its_backup_bucket():
    # The production settings rebuild STORAGES: the backups' entry must survive it, or `manage.py backup`
    # in a CronJob's pod writes to its own (read-only, thrown away) disk.
    kind, bucket, location = production_process(
        _AFTER_GUNICORN_CONF + _BACKUP_STORAGE,
        "worker",
        AWS_STORAGE_BUCKET_NAME="apm-exports",
        APM_BACKUP_BUCKET="apm-backups",
        APM_BACKUP_LOCATION="nightly",
    )
    assert (kind, bucket, location) == ("S3Storage", "apm-backups", "nightly")


def test_a_gunicorn_process_has_one_connection_per_thread():
    assert gunicorn_pool(GUNICORN_THREADS="4") == (2, 4)  # the image's and k8s/web-deployment.yaml's
    assert gunicorn_pool(GUNICORN_THREADS="8") == (4, 8)
    # Operators may still size it themselves: a maximum, or the guide's size + overflow.
    assert gunicorn_pool(GUNICORN_THREADS="4", DATABASE_POOL_MAX_SIZE="6") == (3, 6)
    assert gunicorn_pool(GUNICORN_THREADS="4", DATABASE_POOL_SIZE="2", DATABASE_MAX_OVERFLOW="3") == (2, 5)


def test_a_pool_smaller_than_the_threads_is_a_warning():
    small = manage(
        "check",
        DATABASE_URL=POSTGRES_URL,
        GUNICORN_THREADS="8",
        DATABASE_POOL_MAX_SIZE="4",
        DJANGO_DEBUG="false",
    )
    sized = manage("check", DATABASE_URL=POSTGRES_URL, GUNICORN_THREADS="8", DJANGO_DEBUG="false")
    # The thread count a server exported for its own process wins, as it does for the pool's size.
    exported = manage(
        "check",
        DATABASE_URL=POSTGRES_URL,
        APM_PROCESS_THREADS="6",
        GUNICORN_THREADS="2",
        DATABASE_POOL_MAX_SIZE="3",
        DJANGO_DEBUG="false",
    )

    assert "(apm.W002) The database pool holds at most 4 connections for 8 threads" in small.stderr
    assert "(apm.W002) The database pool holds at most 3 connections for 6 threads" in exported.stderr
    assert "apm.W002" not in sized.stderr + sized.stdout
    assert sized.returncode == 0, sized.stderr


def test_pool_sizes_follow_the_threads_and_the_overrides():
    assert topology.pool_sizes(4, {}) == (2, 4)
    assert topology.pool_sizes(1, {}) == (1, 1)
    assert topology.pool_sizes(4, {"DATABASE_POOL_SIZE": "1", "DATABASE_MAX_OVERFLOW": "0"}) == (1, 1)
    assert topology.pool_sizes(4, {"DATABASE_POOL_SIZE": "20"}) == (20, 20)  # a minimum raises the maximum
    assert topology.pool_sizes(4, {"DATABASE_POOL_SIZE": "9", "DATABASE_POOL_MAX_SIZE": "3"}) == (3, 3)
    assert topology.worker_process_threads("prefork", 8) == 2  # the task and its ingestion heartbeat
    assert topology.worker_process_threads("celery.concurrency.threads", 3) == 6
    assert topology.worker_process_threads("solo", 1) == 2


BROKER = redis_broker()


@pytest.fixture(params=["prefork", "threads"])
def worker(request: pytest.FixtureRequest) -> Iterator[tuple[str, Celery]]:
    require_service(BROKER)
    queue = f"apm-pool-{request.param}-{os.getpid()}"
    process = celery_worker_start(
        queue=queue,
        pool=request.param,
        concurrency=3,
        env={"CELERY_BROKER_URL": BROKER, "CELERY_RESULT_BACKEND": BROKER, "DATABASE_URL": POSTGRES_URL},
    )
    client = celery_client("apm-pool-client", BROKER)
    client.conf.task_default_queue = queue
    try:
        yield request.param, client
    finally:
        celery_worker_stop(process)
        client.close()


def test_a_worker_process_has_a_connection_per_task_and_one_for_its_heartbeat(worker: tuple[str, Celery]):
    pool, client = worker

    answer = client.send_task("monitoring.heartbeat").get(timeout=60)

    # prefork: one task per process; threads: --concurrency (3 here) tasks in the one process.
    assert (
        answer["database_pool"]
        == {"prefork": {"min_size": 1, "max_size": 2}, "threads": {"min_size": 3, "max_size": 6}}[pool]
    )
