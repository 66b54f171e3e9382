"""Cache keys and their invalidation.

Two mechanisms, used together:

* **Explicit keys** for single objects and the portfolio list (``project:{id}``, ``projects:list``):
  deleted by the service that changes the object.
* **Generation keys** for families of derived entries (every summary, chart and page fragment of one
  project): each family has a generation number that is part of every key in the family; bumping the
  number makes all of them unreachable at once, without having to know or hunt their keys. Stale entries
  simply expire.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import cache

from monitoring.metrics import CACHE_LOOKUPS

T = TypeVar("T")

# Generation numbers never expire on purpose. If one is evicted anyway, it is recreated from the clock,
# so it cannot fall back to an earlier number and make stale entries reachable again.
_GENERATION_TIMEOUT = None


def project_key(project_id: int) -> str:
    """Cache key of one project's cached detail."""
    return f"project:{project_id}"


PROJECTS_LIST_KEY = "projects:list"


def generation_get(namespace: str) -> int:
    """Current generation number of ``namespace``, creating it on first use."""
    key = f"generation:{namespace}"
    value = cache.get(key)
    if value is None:
        value = time.time_ns()
        # add() keeps a number another process created in the meantime.
        if not cache.add(key, value, timeout=_GENERATION_TIMEOUT):
            value = cache.get(key, value)
    return int(value)


def generation_bump(namespace: str) -> None:
    """Invalidate every key built from ``namespace``'s generation."""
    key = f"generation:{namespace}"
    try:
        cache.incr(key)
    except ValueError:
        # Not there (expired, evicted, or Redis was down): any new number differs from the old one.
        generation_get(namespace)


def generation_key(namespace: str, *parts: object) -> str:
    """A cache key inside ``namespace``'s current generation."""
    suffix = ":".join(str(part) for part in parts)
    return f"{namespace}:g{generation_get(namespace)}:{suffix}"


def cached(key: str, compute: Callable[[], T], *, family: str, timeout: int | None = None) -> T:
    """Return the cached value at ``key`` or compute, store and return it.

    ``family`` names the kind of figure (``summary``, ``burndown``, ...) for the hit and miss metrics.
    """
    sentinel: Any = object()
    value = cache.get(key, sentinel)
    if value is not sentinel:
        CACHE_LOOKUPS.labels(family=family, result="hit").inc()
    else:
        CACHE_LOOKUPS.labels(family=family, result="miss").inc()
        value = compute()
        if timeout is None:
            cache.set(key, value)
        else:
            cache.set(key, value, timeout)
    return value
