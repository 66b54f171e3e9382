"""What keeps test processes out of each other's way on the servers they share.

Several suites may run at once on one machine (two checkouts, two legs of ``make test`` side by side),
each split over pytest-xdist workers, and all of them use the same Redis (cache and Celery broker),
RabbitMQ, PostgreSQL and MariaDB. Every test process therefore has a namespace of its own,
``apm-test-<run>-<worker>``:

- ``<run>`` is the run's id, ``APM_TEST_RUN_ID``. The run's first process makes it (the pid and random
  digits) and leaves it in its environment: pytest-xdist's controller imports the test settings before
  it starts its workers, which inherit it (else they fall back on xdist's own ``PYTEST_XDIST_TESTRUNUID``).
  Two runs never share it; the workers of one run do.
- ``<worker>`` is the xdist worker (``gw0``, ``gw1``...), ``main`` without xdist.

The namespace is the cache's KEY_PREFIX (config.settings.test) and the Redis broker's key prefix (kombu's
``global_keyprefix``, also on the result backend): the queues, bindings, unacked messages, broadcasts
(ping, mingle) and results of a test's Celery workers live under it, so a test sees only its own
workers and may delete its own keys without touching anyone else's. Each ``celery worker`` a test starts
is named after the namespace too (``worker_nodename``). Databases and directories are already per
process (config.settings.test names them after the pid); RabbitMQ, which has no key prefix, gets queues
named after the process.

Worker tests get their broker here (``redis_broker``, ``amqp_broker``), their client from
``celery_client`` and clean up with ``broker_flush``; ``tests.processes`` passes the key prefix on to the
``celery worker`` processes it starts. This module imports nothing from Django at import time: the
test settings use it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets

import redis
from celery import Celery

RUN_ID_VARIABLE = "APM_TEST_RUN_ID"
# What a ``celery worker`` started by a test reads (config.settings.test) to use the test's key prefix.
BROKER_KEYPREFIX_VARIABLE = "APM_TEST_BROKER_KEYPREFIX"

REDIS_BROKER_VARIABLE = "APM_TEST_REDIS_BROKER_URL"
REDIS_BROKER_DEFAULT = "redis://127.0.0.1:6379/13"
AMQP_BROKER_VARIABLE = "APM_TEST_AMQP_BROKER_URL"
AMQP_BROKER_DEFAULT = "amqp://guest:guest@127.0.0.1:5672//"


def run_id() -> str:
    """This run's id, the same in every xdist worker of the run and different from any other run's."""
    run = os.environ.get(RUN_ID_VARIABLE) or os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:12]
    if not run:
        # No xdist: this process is the whole run. Kept in the environment so that it stays one value.
        run = os.environ[RUN_ID_VARIABLE] = f"{os.getpid():x}{secrets.token_hex(4)}"
    return run


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def namespace() -> str:
    """``apm-test-<run>-<worker>``: the name space of this test process on shared servers."""
    return f"apm-test-{run_id()}-{worker_id()}"


_celery_workers = itertools.count(1)


def worker_nodename() -> str:
    """A node name for the next ``celery worker`` this process starts, unique among every run's workers.

    Workers of one name share a control queue, exclusive on RabbitMQ (a second worker of that name
    cannot consume it), and answer a ping as one.
    """
    return f"{namespace()}-{next(_celery_workers)}@%h"


# The Redis brokers handed out in this process with a key prefix, emptied when its session ends.
_prefixed_brokers: set[Broker] = set()


class Broker(str):
    """A broker URL that knows the key prefix its workers and clients use (empty: none).

    It is a ``str`` so that it goes wherever a URL goes (an environment variable, ``require_service``).
    """

    keyprefix: str

    def __new__(cls, url: str, keyprefix: str = "") -> Broker:
        broker = super().__new__(cls, url)
        broker.keyprefix = keyprefix
        return broker

    def __eq__(self, other: object) -> bool:
        return str.__eq__(self, other) and self.keyprefix == keyprefix_of(other)

    def __hash__(self) -> int:
        return hash((str(self), self.keyprefix))


def redis_broker(variable: str = REDIS_BROKER_VARIABLE, *, keyprefix: bool = True) -> Broker:
    """The Redis broker of the worker tests (``variable`` overrides the URL), keyed under this process's
    namespace.

    ``keyprefix=False`` is for a test whose producer is a process that cannot take a key prefix (an
    operator's ``manage.py`` on the default settings): it keeps to a queue named after its process.
    """
    url = os.environ.get(variable) or os.environ.get(REDIS_BROKER_VARIABLE) or REDIS_BROKER_DEFAULT
    broker = Broker(url, f"{namespace()}:" if keyprefix else "")
    if broker.keyprefix:
        _prefixed_brokers.add(broker)
    return broker


def amqp_broker() -> Broker:
    """RabbitMQ has no key prefix: its tests keep to queues named after their process."""
    return Broker(os.environ.get(AMQP_BROKER_VARIABLE) or AMQP_BROKER_DEFAULT)


def keyprefix_of(url: str) -> str:
    return getattr(url, "keyprefix", "")


def transport_options(keyprefix: str) -> dict[str, str]:
    """The Celery transport options (broker and Redis result backend) of a key prefix."""
    return {"global_keyprefix": keyprefix} if keyprefix else {}


def worker_environment(broker: str) -> dict[str, str]:
    """What a ``celery worker`` on config.settings.test needs in its environment for ``broker``'s prefix."""
    keyprefix = keyprefix_of(broker)
    return {BROKER_KEYPREFIX_VARIABLE: keyprefix} if keyprefix else {}


def celery_client(name: str, broker: str, backend: str | None = None) -> Celery:
    """A Celery client of the test on ``broker`` (and ``backend``, by default the broker), with its prefix."""

    backend = broker if backend is None else backend
    client = Celery(name, broker=str(broker), backend=str(backend), set_as_current=False)
    options = transport_options(keyprefix_of(broker))
    client.conf.broker_transport_options = {**client.conf.broker_transport_options, **options}
    if str(backend).startswith(("redis://", "rediss://")):
        client.conf.result_backend_transport_options = {
            **client.conf.result_backend_transport_options,
            **transport_options(keyprefix_of(broker)),
        }
    return client


def broker_flush(broker: str) -> None:
    """Delete every key of ``broker``'s prefix (the test's queues, bindings, results), and nothing else."""

    keyprefix = keyprefix_of(broker)
    if not keyprefix:
        raise ValueError(f"{broker} has no key prefix: flushing it would delete other runs' keys")
    client = redis.Redis.from_url(str(broker), socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{keyprefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def brokers_flush() -> None:
    """At the end of a session: what this process's worker tests left on their Redis brokers.

    Each run has a namespace of its own, so keys left behind would never be used again, only pile up.
    A broker that does not answer holds nothing of ours to remove.
    """
    for broker in _prefixed_brokers:
        with contextlib.suppress(redis.ConnectionError):
            broker_flush(broker)
