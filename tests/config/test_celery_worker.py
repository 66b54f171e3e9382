"""A real ``celery -A config worker`` process serves tasks sent through a real broker.

Parametrised over Redis and RabbitMQ, the two brokers APM supports. The worker is started exactly as
in production (same command, same settings module); the test talks to it only through the broker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from tests.conftest import require_service
from tests.isolation import amqp_broker, celery_client, redis_broker
from tests.processes import celery_worker_start, celery_worker_stop

ROOT = Path(__file__).resolve().parents[2]

# Redis: keyed under this test process's namespace; RabbitMQ: a queue named after the process.
BROKERS = {"redis": (redis_broker(), redis_broker()), "rabbitmq": (amqp_broker(), "rpc://")}


@pytest.fixture(params=sorted(BROKERS))
def worker(request: pytest.FixtureRequest) -> Iterator[Celery]:
    broker_url, backend_url = BROKERS[request.param]
    require_service(broker_url)
    queue = f"apm-test-{request.param}-{os.getpid()}"
    process = celery_worker_start(
        queue=queue, env={"CELERY_BROKER_URL": broker_url, "CELERY_RESULT_BACKEND": backend_url}
    )
    client = celery_client("apm-test-client", broker_url, backend_url)
    client.conf.task_default_queue = queue
    try:
        yield client
    finally:
        celery_worker_stop(process)
        client.close()


def test_a_worker_answers_through_the_broker(worker: Celery):
    result = worker.send_task("monitoring.heartbeat")

    answer = result.get(timeout=60)

    assert answer["pid"] != os.getpid()
    assert answer["hostname"]
    assert answer["at"]
