"""Cache keys, their invalidation, and reads that hold up under a crowd and through an outage.

Entries are invalidated by **generation keys**: a family of entries (everything derived from one
project: its summary, charts and page fragments; the portfolio of every project) has a generation number
that is part of every key in the family, and bumping the number makes all of them unreachable at once,
without having to know or hunt their keys. Stale entries simply expire. (``cache_invalidate`` can also
delete explicit keys.)

Generations also close the race an explicit delete leaves open: a reader that computed from the database
before a write committed, and stores its result after the write's invalidation, stores it under the
generation it read before computing, which the invalidation (run once the write commits) has already
left behind. A deleted key would have been written again, stale, for the whole of its timeout.

APM promises that figures are never stale: after a write, the next read shows it. ``cached()`` keeps
that promise while sparing the database:

* **One computation at a time.** When an entry is missing, the first reader takes a short lock
  (``cache.add`` of ``lock:<key>``) and computes; the others poll for its result for a bounded time
  (``CACHE_WAIT_SECONDS``) and then compute themselves rather than fail. The lock expires on its own
  (``CACHE_LOCK_SECONDS``), so a reader that dies holding it blocks nobody for long.
* **Expired by time is not invalidated.** Each entry has a sidecar ``meta:<key>`` holding when it stops
  being fresh; the value itself lives ``CACHE_STALE_SECONDS`` longer. The first reader after that moment
  takes the lock and recomputes while the others are still served the previous value. An invalidated
  entry is never served: a generation bump changes the key and a delete removes the value, so neither
  leaves anything to serve. The value is stored as the caller computed it, under the caller's key, so
  the entries' shape (and ``insights.selectors.ANALYTICS_FORMAT``) is unchanged, and a
  ``cache.delete_many`` of an explicit key still drops it.

**Outages.** In production the cache is django-redis with ``IGNORE_EXCEPTIONS``: a Redis outage turns
into misses, not errors. Reads here go to the django-redis client underneath, so this module sees the
failure: it then computes directly, leaves the cache alone for ``CACHE_RETRY_SECONDS`` (a blackholed
server would cost a connect timeout per call otherwise) and never waits for a lock it could not take.

An invalidation lost to an outage is the dangerous case: the bump or delete never reached Redis, and
when Redis comes back (from a persisted snapshot, or after a network cut that left it running) the old
generation numbers and entries are there again, reachable, and stale. Only the process whose bump failed
knows. So every entry's sidecar also records the cache's **epoch** (``cache:epoch``, a random token
made when missing), and an entry of another epoch is never served. A process whose invalidation failed
owes the cache a new epoch: it replaces the token as soon as Redis answers again, from a background
thread that retries every ``CACHE_RETRY_SECONDS`` (a Celery worker that ingested during the outage may
never read through the cache again), and before its own next read. Every process then ignores every
entry written before the outage; the cache refills from the database. An outage costs a cold cache,
never a stale figure. A Redis restarted without persistence comes back empty, which is the same thing.

A process that owes the renewal when it exits (a management command run during the outage) keeps trying
for ``CACHE_EXIT_RENEWAL_SECONDS`` more, and logs ``cache_epoch_renewal_lost`` if Redis is still away.

What this cannot cover, and the deployment must: a process that loses a bump and exits (or is killed)
before Redis returns leaves nobody to renew the epoch (its entries expire with their timeout; after an
outage during which batch commands ran, renew it by deleting ``cache:epoch``), and a cache Redis that
persists with RDB snapshots brings back, after a crash, generation numbers older than bumps that did
succeed, which no client can notice. Run the cache's Redis without persistence (docs/architecture.md).
"""

from __future__ import annotations

import atexit
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django_redis.cache import RedisCache as DjangoRedisCache
from django_redis.exceptions import ConnectionInterrupted

from monitoring.metrics import CACHE_LOOKUPS

logger = structlog.get_logger(__name__)

T = TypeVar("T")

# Generation numbers never expire on purpose. If one is evicted anyway, it is recreated from the clock,
# so it cannot fall back to an earlier number and make stale entries reachable again.
_GENERATION_TIMEOUT = None

# The cache's epoch: every entry written through cached() records it, and only entries of the current
# epoch are served. Replaced after an invalidation was lost to an outage; recreated when missing.
EPOCH_KEY = "cache:epoch"

# Defaults of the settings that tune cached(); each may be set in the settings module.
# How long a computation may hold its lock before others take it as dead.
CACHE_LOCK_SECONDS = 30.0
# How long a reader waits for another's computation of a missing entry before computing itself: longer
# than the slowest figure takes on a large project (a few seconds), so a crowd does not compute it again
# in parallel, and well under the web server's 30 s timeout.
CACHE_WAIT_SECONDS = 10.0
# How long a process that owes the epoch's renewal keeps trying as it exits.
CACHE_EXIT_RENEWAL_SECONDS = 5.0
# How long after it stops being fresh an entry may still be served while one reader recomputes it.
CACHE_STALE_SECONDS = 60.0
# After a failure, how long the cache is left alone before it is tried again.
CACHE_RETRY_SECONDS = 2.0

# A waiting reader polls from the first delay up to the longest one, doubling each time.
_POLL_FIRST_SECONDS = 0.01
_POLL_LONGEST_SECONDS = 0.1


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def project_key(project_id: int) -> str:
    """The generation namespace of everything cached about one project."""
    return f"project:{project_id}"


# The generation namespace of the portfolio (every project's row), bumped with any project's.
PORTFOLIO_NAMESPACE = "projects"


# --- Talking to the cache, knowing when it did not answer ---------------------------------------------


class CacheUnavailable(Exception):
    """The cache did not answer."""


def _backend() -> BaseCache:
    # The default cache as configured now (settings overridden in a test included), one per thread.
    return caches["default"]


def _call(backend: BaseCache, method: str, *args: Any, **kwargs: Any) -> Any:
    """``backend.<method>(...)``, raising ``CacheUnavailable`` when the cache server did not answer.

    django-redis with ``IGNORE_EXCEPTIONS`` hides failures (a get answers None, an add False, a delete
    nothing); its client underneath raises them, so it is called directly.
    """
    if isinstance(backend, DjangoRedisCache):
        try:
            return getattr(backend.client, method)(*args, **kwargs)
        except ConnectionInterrupted as error:
            raise CacheUnavailable(str(error)) from error
    return getattr(backend, method)(*args, **kwargs)


@dataclass
class _Health:
    """What this process knows about one cache server."""

    # time.monotonic() before which the cache is not asked (it failed recently).
    retry_at: float = 0.0
    # An invalidation failed: the epoch must be replaced before this process trusts an entry again.
    renewal_owed: bool = False
    renewer: threading.Thread | None = None
    # The backend the renewal is owed to, for the attempt at exit.
    backend: BaseCache | None = None


_health: dict[str, _Health] = {}
_health_lock = threading.Lock()


def _identity(backend: BaseCache) -> str:
    """Which cache server and key space ``backend`` talks to (each thread has a backend object of its own)."""
    location = getattr(backend, "_server", "") or id(getattr(backend, "_cache", backend))
    return f"{type(backend).__qualname__}:{location}:{backend.key_prefix}"


def _health_of(backend: BaseCache) -> _Health:
    with _health_lock:
        return _health.setdefault(_identity(backend), _Health())


def _failed(backend: BaseCache, *, invalidation: bool = False) -> None:
    """The cache did not answer; when what was lost is an invalidation, the epoch is owed."""
    health = _health_of(backend)
    with _health_lock:
        # One line per outage and process every CACHE_RETRY_SECONDS at most, not one per request.
        logger.warning("cache_unavailable", invalidation_lost=invalidation)
        health.retry_at = time.monotonic() + _setting("CACHE_RETRY_SECONDS", CACHE_RETRY_SECONDS)
        if not invalidation:
            return
        health.renewal_owed = True
        health.backend = backend
        if health.renewer is not None and health.renewer.is_alive():
            return
        health.renewer = threading.Thread(
            target=_renew_until_done, args=(backend, health), name="apm-cache-epoch-renewal", daemon=True
        )
        health.renewer.start()


def _renew(backend: BaseCache, health: _Health) -> bool:
    """Replace the epoch (every entry written before becomes unreachable); False if the cache is down."""
    try:
        _call(backend, "set", EPOCH_KEY, uuid.uuid4().hex, timeout=None)
    except CacheUnavailable:
        with _health_lock:
            health.retry_at = time.monotonic() + _setting("CACHE_RETRY_SECONDS", CACHE_RETRY_SECONDS)
        return False
    with _health_lock:
        health.renewal_owed = False
        health.retry_at = 0.0
    logger.info("cache_epoch_renewed")
    return True


def _renew_until_done(backend: BaseCache, health: _Health) -> None:
    while True:
        time.sleep(_setting("CACHE_RETRY_SECONDS", CACHE_RETRY_SECONDS))
        with _health_lock:
            if not health.renewal_owed:
                return
        if _renew(backend, health):
            return


def _usable(backend: BaseCache) -> bool:
    """Whether to ask the cache at all: not while a recent failure says it is down, and not before the
    epoch this process owes is renewed."""
    health = _health.get(_identity(backend))
    if health is None:
        return True
    if time.monotonic() < health.retry_at:
        return False
    if health.renewal_owed:
        return _renew(backend, health)
    return True


def cache_reachable() -> bool:
    """False while a recent failure says the cache is down (for ``CACHE_RETRY_SECONDS``): callers that
    would only lose time on it (the API's rate limits) skip it instead of waiting out a socket timeout."""
    health = _health.get(_identity(_backend()))
    return health is None or time.monotonic() >= health.retry_at


def _renew_at_exit() -> None:
    """A short-lived process (``ingest_repo``, a shell) that lost an invalidation tries, as it exits, to
    replace the epoch for a few seconds more: no thread of it will be left to do it later."""
    deadline = time.monotonic() + _setting("CACHE_EXIT_RENEWAL_SECONDS", CACHE_EXIT_RENEWAL_SECONDS)
    for identity, health in list(_health.items()):
        if not health.renewal_owed or health.backend is None:
            continue
        while time.monotonic() < deadline and not _renew(health.backend, health):
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        if health.renewal_owed:
            logger.error("cache_epoch_renewal_lost", cache=identity)


atexit.register(_renew_at_exit)


def cache_renewal_owed() -> bool:
    """Whether this process lost an invalidation and has not yet replaced the cache's epoch."""
    health = _health.get(_identity(_backend()))
    return health is not None and health.renewal_owed


# --- Generations and invalidation ---------------------------------------------------------------------


def generation_get(namespace: str) -> int:
    """Current generation number of ``namespace``, creating it on first use.

    With the cache down, a number of its own each time: every key built from it is a miss.
    """
    key = f"generation:{namespace}"
    backend = _backend()
    if not _usable(backend):
        return time.time_ns()
    try:
        value = _call(backend, "get", key)
        if value is None:
            value = time.time_ns()
            # add() keeps a number another process created in the meantime.
            if not _call(backend, "add", key, value, timeout=_GENERATION_TIMEOUT):
                value = _call(backend, "get", key, value)
    except CacheUnavailable:
        _failed(backend)
        return time.time_ns()
    return int(value)


def _bump(backend: BaseCache, key: str) -> None:
    try:
        _call(backend, "incr", key)
    except ValueError:
        # Not there (expired or evicted): any new number from the clock differs from the old one.
        if not _call(backend, "add", key, time.time_ns(), timeout=_GENERATION_TIMEOUT):
            _call(backend, "incr", key)


def generation_bump(namespace: str) -> None:
    """Invalidate every key built from ``namespace``'s generation.

    If the cache does not answer, the bump is lost: the epoch is then owed (the module docstring).
    """
    cache_invalidate(generations=[namespace])


def cache_invalidate(*, keys: Iterable[str] = (), generations: Iterable[str] = ()) -> None:
    """Delete explicit ``keys`` and bump the ``generations`` named, as one invalidation.

    If the cache does not answer, none of it may be trusted: this process owes the cache a new epoch,
    which drops every entry written before (the module docstring).
    """
    backend = _backend()
    keys, generations = list(keys), list(generations)
    if not _usable(backend):
        _failed(backend, invalidation=True)
        return
    try:
        if keys:
            _call(backend, "delete_many", keys)
        for namespace in generations:
            _bump(backend, f"generation:{namespace}")
    except CacheUnavailable:
        _failed(backend, invalidation=True)


def generation_key(namespace: str, *parts: object) -> str:
    """A cache key inside ``namespace``'s current generation."""
    suffix = ":".join(str(part) for part in parts)
    return f"{namespace}:g{generation_get(namespace)}:{suffix}"


# --- Reading through the cache ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    value: Any
    fresh: bool


def _entry(found: dict[str, Any], key: str, epoch: str) -> _Found | None:
    """The entry at ``key`` in what a get_many returned, if it belongs to ``epoch``.

    A value without its sidecar (evicted, or written by a release before sidecars) is not trusted.
    """
    value, meta = found.get(key), found.get(f"meta:{key}")
    if value is None or not isinstance(meta, tuple) or len(meta) != 2 or meta[0] != epoch:
        return None
    fresh_until = meta[1]
    return _Found(value=value, fresh=fresh_until is None or time.time() < fresh_until)


def _epoch(backend: BaseCache, found: dict[str, Any]) -> str:
    epoch = found.get(EPOCH_KEY)
    if epoch is None:
        epoch = uuid.uuid4().hex
        if not _call(backend, "add", EPOCH_KEY, epoch, timeout=None):
            epoch = _call(backend, "get", EPOCH_KEY, epoch)
    return str(epoch)


def _store(backend: BaseCache, key: str, value: Any, *, epoch: str, fresh_for: float | None) -> None:
    """Store ``value`` with its sidecar; a failure only costs the next reader a computation."""
    if value is None or (fresh_for is not None and fresh_for <= 0):
        return
    fresh_until = None if fresh_for is None else time.time() + fresh_for
    keep_for = None if fresh_for is None else fresh_for + _setting("CACHE_STALE_SECONDS", CACHE_STALE_SECONDS)
    try:
        # One MULTI/EXEC on django-redis: a reader never sees the value without its sidecar's epoch.
        _call(backend, "set_many", {key: value, f"meta:{key}": (epoch, fresh_until)}, timeout=keep_for)
    except CacheUnavailable:
        _failed(backend)


def _lock_take(backend: BaseCache, key: str) -> str | None:
    token = uuid.uuid4().hex
    seconds = _setting("CACHE_LOCK_SECONDS", CACHE_LOCK_SECONDS)
    return token if _call(backend, "add", f"lock:{key}", token, timeout=seconds) else None


def _lock_release(backend: BaseCache, key: str, token: str) -> None:
    # Only our own lock: if it expired and another reader took it, that one is theirs to release.
    try:
        if _call(backend, "get", f"lock:{key}") == token:
            _call(backend, "delete", f"lock:{key}")
    except CacheUnavailable:
        _failed(backend)


def _compute_and_store(
    backend: BaseCache,
    key: str,
    compute: Callable[[], T],
    *,
    epoch: str,
    fresh_for: float | None,
    lock: str | None,
) -> T:
    try:
        value = compute()
        _store(backend, key, value, epoch=epoch, fresh_for=fresh_for)
    finally:
        if lock is not None:
            _lock_release(backend, key, lock)
    return value


def _count(family: str, result: str) -> None:
    CACHE_LOOKUPS.labels(family=family, result=result).inc()


def cached(key: str, compute: Callable[[], T], *, family: str, timeout: float | None = None) -> T:
    """Return the cached value at ``key`` or compute, store and return it.

    ``family`` names the kind of figure (``summary``, ``burndown``, ...) for the lookup metrics: each
    lookup counts once, as ``hit`` (a fresh entry), ``stale`` (an entry past its freshness, served while
    another reader recomputes it), ``waited`` (another reader's computation, waited for) or ``miss``
    (computed here). ``timeout`` is how long the entry stays fresh (the cache's default when None).
    ``compute`` should not return None: None is never cached.
    """
    backend = _backend()
    if not _usable(backend):
        _count(family, "miss")
        return compute()
    fresh_for = backend.default_timeout if timeout is None else timeout
    try:
        found = _call(backend, "get_many", [key, f"meta:{key}", EPOCH_KEY])
        epoch = _epoch(backend, found)
        entry = _entry(found, key, epoch)
        if entry is not None and entry.fresh:
            _count(family, "hit")
            return entry.value
        lock = _lock_take(backend, key)
    except CacheUnavailable:
        _failed(backend)
        _count(family, "miss")
        return compute()
    if lock is not None:
        _count(family, "miss")
        return _compute_and_store(backend, key, compute, epoch=epoch, fresh_for=fresh_for, lock=lock)
    if entry is not None:
        _count(family, "stale")
        return entry.value
    return _wait_or_compute(backend, key, compute, family=family, epoch=epoch, fresh_for=fresh_for)


def _wait_or_compute(
    backend: BaseCache,
    key: str,
    compute: Callable[[], T],
    *,
    family: str,
    epoch: str,
    fresh_for: float | None,
) -> T:
    """Another reader is computing ``key``: wait for its value, take over its lock if it gives up, and
    compute here once the wait is over."""
    deadline = time.monotonic() + _setting("CACHE_WAIT_SECONDS", CACHE_WAIT_SECONDS)
    delay = _POLL_FIRST_SECONDS
    lock: str | None = None
    try:
        while time.monotonic() < deadline:
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, _POLL_LONGEST_SECONDS)
            found = _call(backend, "get_many", [key, f"meta:{key}", EPOCH_KEY, f"lock:{key}"])
            entry = _entry(found, key, found.get(EPOCH_KEY, epoch))
            if entry is not None:
                _count(family, "waited")
                return entry.value
            if f"lock:{key}" not in found:
                # The holder finished without storing (it failed) or its lock expired.
                lock = _lock_take(backend, key)
                if lock is not None:
                    break
    except CacheUnavailable:
        _failed(backend)
        _count(family, "miss")
        return compute()
    _count(family, "miss")
    return _compute_and_store(backend, key, compute, epoch=epoch, fresh_for=fresh_for, lock=lock)
