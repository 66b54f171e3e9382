"""Readiness checks: can this process reach what it needs to serve requests?"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

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


def _database_probe() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _cache_probe() -> None:
    # The cache ignores Redis errors on purpose (IGNORE_EXCEPTIONS); readiness asks the client directly
    # where it can, so an outage shows here even though pages keep working without the cache.
    client = getattr(cache, "client", None)
    if client is not None and hasattr(client, "get_client"):
        client.get_client(write=True).ping()
        return
    cache.set("readyz", 1, 5)


def readiness_checks() -> list[CheckResult]:
    """Run every readiness probe and return their results."""
    return [_timed("database", _database_probe), _timed("cache", _cache_probe)]
