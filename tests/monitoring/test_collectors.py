"""What /metrics asks at scrape time (monitoring.collectors), against real brokers, caches and databases:
queue depths on Redis and RabbitMQ, a broker that is down or hangs, the cache's reachability, the beat's
last run and the database pool."""

from __future__ import annotations

import os
import socket
import time

import pytest
from django.core.cache import caches
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from kombu import Connection, Exchange, Queue
from prometheus_client.parser import text_string_to_metric_families

from monitoring.collectors import scrape_caches_forget
from tests.conftest import require_service
from tests.isolation import amqp_broker, redis_broker, transport_options
from tests.services import UNREACHABLE_REDIS

pytestmark = pytest.mark.django_db

REDIS = redis_broker()
AMQP = amqp_broker()


def scrape(client) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:  # type: ignore[no-untyped-def]
    """The samples of one scrape, by name, then by their labels."""
    scrape_caches_forget()
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def broker_settings(settings):  # type: ignore[no-untyped-def]
    def use(url: str, queues: list[str], keyprefix: str = "") -> None:
        settings.CELERY_TASK_ALWAYS_EAGER = False
        settings.CELERY_BROKER_URL = url
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
            **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            **transport_options(keyprefix),
        }
        settings.APM_METRICS_QUEUES = queues

    yield use
    scrape_caches_forget()


def publish(url: str, queue: str, count: int, *, priority: int | None = None, keyprefix: str = "") -> None:
    with Connection(url, transport_options=transport_options(keyprefix)) as conn:
        target = Queue(queue, Exchange(queue, type="direct"), routing_key=queue)
        producer = conn.Producer()
        for number in range(count):
            producer.publish(
                {"n": number},
                exchange=target.exchange,
                routing_key=queue,
                declare=[target],
                priority=priority,
            )


@pytest.fixture
def redis_queue() -> str:
    require_service(REDIS)
    return f"apm-depth-{os.getpid()}"  # under the test's key prefix: removed with the others at the end


def test_queue_depth_on_redis_counts_the_priority_lists_too(client, broker_settings, redis_queue: str):
    broker_settings(str(REDIS), [redis_queue, "never-declared"], keyprefix=REDIS.keyprefix)
    publish(str(REDIS), redis_queue, 2, keyprefix=REDIS.keyprefix)
    publish(str(REDIS), redis_queue, 3, priority=9, keyprefix=REDIS.keyprefix)

    samples = scrape(client)

    assert samples["apm_celery_broker_up"] == {(): 1.0}
    assert samples["apm_celery_queue_depth"] == {
        (("queue", redis_queue),): 5.0,
        (("queue", "never-declared"),): 0.0,
    }


def test_queue_depth_on_rabbitmq(client, broker_settings):
    require_service(AMQP)
    queue = f"apm-depth-{os.getpid()}"
    broker_settings(str(AMQP), [queue, f"{queue}-never-declared"])
    publish(str(AMQP), queue, 4)
    try:
        samples = scrape(client)
    finally:
        with Connection(str(AMQP)) as conn:
            conn.default_channel.queue_delete(queue)

    assert samples["apm_celery_broker_up"] == {(): 1.0}
    assert samples["apm_celery_queue_depth"] == {
        (("queue", queue),): 4.0,
        (("queue", f"{queue}-never-declared"),): 0.0,
    }


def test_a_broker_that_is_down_is_reported_not_waited_for(client, broker_settings):
    broker_settings("redis://127.0.0.1:1/0", ["celery"])

    samples = scrape(client)

    assert samples["apm_celery_broker_up"] == {(): 0.0}
    assert "apm_celery_queue_depth" not in samples


def test_a_broker_that_hangs_costs_the_scrape_one_short_timeout(client, broker_settings):
    # A port that accepts connections (the kernel's backlog) and never answers a byte.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        broker_settings(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", ["celery", "ingestion"])
        started = time.monotonic()
        samples = scrape(client)
        elapsed = time.monotonic() - started

    assert samples["apm_celery_broker_up"] == {(): 0.0}
    # Prometheus gives up on a scrape after 10 s by default; the broker's timeout is 1 s.
    assert elapsed < 8, elapsed


def test_eager_celery_reports_no_broker(client):
    samples = scrape(client)

    assert "apm_celery_broker_up" not in samples
    assert "apm_celery_queue_depth" not in samples


def test_the_cache_up_gauge_follows_redis(client, settings):
    require_service(REDIS)
    settings.CACHES = {
        "default": {
            **UNREACHABLE_REDIS["default"],
            "LOCATION": f"redis://127.0.0.1:{REDIS.split(':')[2].split('/')[0]}/15",
        }
    }
    try:
        reachable = scrape(client)["apm_cache_up"]
    finally:
        caches["default"].close()
    settings.CACHES = UNREACHABLE_REDIS
    try:
        unreachable = scrape(client)["apm_cache_up"]
    finally:
        caches["default"].close()

    assert reachable == {(): 1.0}
    assert unreachable == {(): 0.0}


# Committed: the scrape reads the figure on a connection of its own (monitoring.deadline), as it reads
# the beat's own commits in production.
@pytest.mark.django_db(transaction=True)
def test_the_beats_last_run_is_the_newest_periodic_task_sent(client):
    every_minute = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.update(last_run_at=None)
    assert "apm_beat_last_run_timestamp_seconds" not in scrape(client)
    sent = timezone.now().replace(microsecond=0)
    PeriodicTask.objects.create(
        name="older",
        task="monitoring.heartbeat",
        interval=every_minute,
        last_run_at=sent - timezone.timedelta(hours=1),
    )
    PeriodicTask.objects.create(
        name="newer", task="monitoring.heartbeat", interval=every_minute, last_run_at=sent
    )

    samples = scrape(client)

    assert samples["apm_beat_last_run_timestamp_seconds"] == {(): sent.timestamp()}


def test_the_database_pool_of_this_process(client):
    if connection.vendor != "postgresql":
        pytest.skip("Django pools connections on PostgreSQL only (psycopg_pool)")
    client.get("/healthz")  # a request: the pool has been used

    samples = scrape(client)

    pool = connection.pool
    assert samples["apm_db_pool_max_size"] == {(("alias", "default"),): float(pool.max_size)}
    assert samples["apm_db_pool_size"][(("alias", "default"),)] >= 1
    # The scrape's own request holds the test's connection (a test runs in one transaction).
    assert samples["apm_db_pool_connections_in_use"][(("alias", "default"),)] >= 1
    assert samples["apm_db_pool_requests_waiting"] == {(("alias", "default"),): 0.0}
