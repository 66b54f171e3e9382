"""Readiness checks: can this process reach what it needs to serve requests?"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from django.core.cache import cache
from django.db import connections


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    seconds: float
    error: str = ""


def _timed(name: str, probe: Callable[[], object]) -> CheckResult:
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:  # a readiness probe reports every failure instead of raising it
        return CheckResult(name, False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    return CheckResult(name, True, time.perf_counter() - started)


# How long readiness waits for the database to accept a connection: under the probe's own timeout (3 s
# in k8s/); libpq counts whole seconds, two at least.
READINESS_DATABASE_SECONDS = 2


def database_probe(*, timeout: int = READINESS_DATABASE_SECONDS) -> None:
    """Raise unless the database answers ``SELECT 1``.

    With PostgreSQL's pool, on a connection of its own: the pool would make the probe wait up to
    ``DATABASE_POOL_TIMEOUT`` (5 s) during an outage, and after one it retries at growing intervals, so
    it would say the database is away for a while after it is back.
    """
    connection = connections["default"]
    if getattr(connection, "pool", None) is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return
    params = connection.get_connection_params()
    with psycopg.connect(**params, connect_timeout=timeout) as direct:
        direct.execute("SELECT 1").fetchone()


def cache_probe() -> None:
    # The cache ignores Redis errors on purpose (IGNORE_EXCEPTIONS); readiness asks the client directly
    # where it can, so an outage shows here even though pages keep working without the cache.
    client = getattr(cache, "client", None)
    if client is not None and hasattr(client, "get_client"):
        client.get_client(write=True).ping()
        return
    cache.set("readyz", 1, 5)


def readiness_checks() -> list[CheckResult]:
    """Run every readiness probe and return their results."""
    return [_timed("database", database_probe), _timed("cache", cache_probe)]
