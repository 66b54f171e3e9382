"""Fixtures shared by the whole suite.

The suite runs against whatever DATABASE_URL, REDIS_URL and CELERY_BROKER_URL name (the Makefile runs
it on PostgreSQL + Redis, on SQLite, and on MariaDB). Tests that need a server beyond the database
(a broker, Redis) call ``require_service``: they skip on a developer machine without it, and fail in CI
(APM_REQUIRE_SERVICES=1), where a missing server must never pass silently.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from celery._state import _set_task_join_will_block
from django.conf import settings
from django.core.cache import cache

import repos.git
from tests import isolation
from tests.factories import UserFactory

# The API tests of every app share the ``world`` fixture.
pytest_plugins = ["tests.world"]


def services_required() -> bool:
    return os.environ.get("APM_REQUIRE_SERVICES") == "1"


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    default_ports = {"redis": 6379, "amqp": 5672, "pyamqp": 5672}
    address = (parsed.hostname or "127.0.0.1", parsed.port or default_ports.get(parsed.scheme, 0))
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def require_service(url: str) -> None:
    """Skip (locally) or fail (in CI, APM_REQUIRE_SERVICES=1) when the server at ``url`` does not answer."""
    if _reachable(url):
        return
    problem = f"nothing answers at {url}"
    if services_required():
        pytest.fail(f"{problem}, and APM_REQUIRE_SERVICES=1 says it must be there")
    pytest.skip(problem)


@pytest.fixture(scope="session", autouse=True)
def _media_removed() -> Iterator[None]:
    """Export files written by the tests (config.settings.test gives each process its own directory)."""
    yield
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _namespace_keys_removed() -> Iterator[None]:
    """What this process left on Redis under its namespace (tests/isolation.py).

    Cache entries (some never expire) and its worker tests' broker keys: no later run uses the namespace.
    """
    yield
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")
    isolation.brokers_flush()


@pytest.fixture(autouse=True)
def _cache_cleared() -> None:
    """Each test starts with an empty cache.

    On Redis only this process's key prefix is deleted (config.settings.test keys the cache under the
    process's namespace, tests/isolation.py): django-redis' clear() would flush the whole database, under
    the other xdist workers of the run and under other runs.
    """
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _celery_joins_allowed() -> None:
    """The test process is never a worker: a test may wait on a task's result.

    Celery keeps "inside a task" in one process-wide flag, which every eager task sets and restores. Two
    threads running eager tasks at once (the concurrency and fault tests) can restore it out of order and
    leave it set, and ``result.get()`` in a later test of the process then refused to wait ("Never call
    result.get() within a task!"). APM's own code never waits on a result.
    """
    _set_task_join_will_block(False)


@pytest.fixture
def user(db):  # type: ignore[no-untyped-def]
    return UserFactory()


@pytest.fixture
def admin_user(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client, admin_user):  # type: ignore[no-untyped-def]
    client.force_login(admin_user)
    return client


# The tests' remote sources are named under example.com (RFC 2606), which this machine (and CI) cannot
# resolve; a remote that does not resolve is refused. These names stand for a public git host: they
# resolve to a documentation-free public address, and every other name goes to the real resolver.
EXAMPLE_HOST_ADDRESS = "93.184.215.14"


@pytest.fixture(autouse=True)
def _example_hosts_resolve(monkeypatch) -> None:  # type: ignore[no-untyped-def]

    resolve = repos.git.host_addresses

    def host_addresses(host: str, port: int) -> list[str]:
        if host == "example.com" or host.endswith(".example.com"):
            return [EXAMPLE_HOST_ADDRESS]
        return resolve(host, port)

    monkeypatch.setattr(repos.git, "host_addresses", host_addresses)
