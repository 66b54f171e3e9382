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
into misses, not errors. Calls here go to the django-redis client underneath, so this module sees the
failure, and each cache server has a **circuit breaker** in every process: after a failure (refused, or
a socket timeout: a hung Redis still accepts connections and answers nothing), the cache is left alone
for ``CACHE_RETRY_SECONDS``. Reads compute, stores are dropped, invalidations are recorded as owed (below)
and nobody waits for a lock, so a hung Redis costs one short socket timeout (``CACHE_SOCKET_TIMEOUT``
in the settings) per process and retry period, not several per request. Then one call (a request's, or
a background thread's) tries it again while the others keep skipping it; when it answers, the breaker
closes. Opening logs ``cache_breaker_opened`` and counts ``apm_cache_breaker_opened_total``.

An invalidation lost to an outage is the dangerous case: the bump or delete never reached Redis, and
when Redis comes back (from a persisted snapshot, after a network cut, or resumed after a hang, with the
commands sent before it froze but none sent on connections opened during it) the old generation numbers
and entries are there again, reachable, and stale. So every entry's sidecar also records the cache's
**epoch** (``cache:epoch``, a random token made when missing), and an entry of another epoch is never
served. Two things replace the epoch after a lost invalidation:

* The process that lost it owes the cache a new epoch: it replaces the token as soon as Redis answers
  again, from a background thread that tries whenever the breaker lets it (a Celery worker that
  ingested during the outage may never read through the cache again), and before its own next read.
* Every other process, which cannot know: on Redis the epoch is a **lease** of
  ``CACHE_EPOCH_LEASE_SECONDS``, renewed by each process that uses the cache (a background thread) while
  Redis answers. An outage or hang longer than the lease lets it expire inside Redis itself, whose clock
  does not stop, so when Redis answers again every process finds a new epoch, even if the process that
  lost the invalidation was killed meanwhile. Nothing written before is served; the cache refills.

An outage costs a cold cache, never a stale figure. A Redis restarted without persistence comes back
empty, which is the same thing.

A process that owes the renewal when it exits (a management command run during the outage) keeps trying
for ``CACHE_EXIT_RENEWAL_SECONDS`` more, and logs ``cache_epoch_renewal_lost`` if Redis is still away.

What this cannot cover (docs/architecture.md): an outage shorter than the lease in which the process
that lost an invalidation also dies (or exits) before Redis answers again leaves its stale entries until
their timeout (renew by deleting ``cache:epoch``); while only some processes are cut off from Redis, the
others keep the lease alive and may serve what a cut-off one invalidated until it reaches Redis again;
and a cache Redis that persists with RDB snapshots and restarts within the lease brings back
generation numbers older than bumps that did succeed. Run the cache's Redis without persistence.
"""

from __future__ import annotations

import atexit
import os
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
from django.db import transaction
from django_redis.cache import RedisCache as DjangoRedisCache
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apm.replicas import replica_reading
from monitoring.metrics import CACHE_BREAKER_OPENED, CACHE_LOOKUPS

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
# After a failure, how long the cache is left alone (the breaker open) before it is tried again.
CACHE_RETRY_SECONDS = 2.0
# On Redis, how long the epoch lives without a process renewing it: an outage longer than this drops
# every entry written before it, in every process (the module docstring).
CACHE_EPOCH_LEASE_SECONDS = 10.0
# A process stops renewing the lease after this long without using the cache itself.
_LEASE_IDLE_SECONDS = 3600.0

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


@dataclass
class _Health:
    """What this process knows about one cache server: its breaker, the epoch it owes, its lease."""

    # The breaker: open after a failure; until retry_at (time.monotonic()) every call is skipped, then
    # one call at a time tries the server again.
    open: bool = False
    retry_at: float = 0.0
    opened_at: float = 0.0
    # An invalidation failed: the epoch must be replaced before this process trusts an entry again.
    renewal_owed: bool = False
    renewer: threading.Thread | None = None
    # The backend the renewal is owed to, for the attempt at exit.
    backend: BaseCache | None = None
    # The thread renewing the epoch's lease (Redis only), and when this process last used the cache.
    keeper: threading.Thread | None = None
    used_at: float = 0.0


_health: dict[str, _Health] = {}
_health_lock = threading.Lock()


def _identity(backend: BaseCache) -> str:
    """Which cache server and key space ``backend`` talks to (each thread has a backend object of its own)."""
    location = getattr(backend, "_server", "") or id(getattr(backend, "_cache", backend))
    return f"{type(backend).__qualname__}:{location}:{backend.key_prefix}"


def _health_of(backend: BaseCache) -> _Health:
    with _health_lock:
        return _health.setdefault(_identity(backend), _Health())


def _admitted(health: _Health) -> bool:
    """Whether a call may go to the server: always while the breaker is closed; while it is open, none
    before ``retry_at``, then one, which becomes the probe (the others are skipped until it answers)."""
    if not health.open:
        return True
    with _health_lock:
        now = time.monotonic()
        if not health.open:
            return True
        if now < health.retry_at:
            return False
        health.retry_at = now + _setting("CACHE_RETRY_SECONDS", CACHE_RETRY_SECONDS)
        return True


def _breaker_trip(health: _Health, error: Exception) -> None:
    retry = _setting("CACHE_RETRY_SECONDS", CACHE_RETRY_SECONDS)
    with _health_lock:
        health.retry_at = time.monotonic() + retry
        if health.open:
            return  # a probe failed: still open, already logged and counted
        health.open = True
        health.opened_at = time.monotonic()
    # One line per outage and process, not one per request.
    logger.warning("cache_breaker_opened", error=str(error), retry_seconds=retry)
    CACHE_BREAKER_OPENED.inc()


def _breaker_reset(health: _Health) -> None:
    if not health.open:
        return
    with _health_lock:
        if not health.open:
            return
        health.open = False
        health.retry_at = 0.0
        seconds = time.monotonic() - health.opened_at
    logger.info("cache_breaker_closed", open_seconds=round(seconds, 3))


def _call(backend: BaseCache, method: str, *args: Any, **kwargs: Any) -> Any:
    """``backend.<method>(...)``, raising ``CacheUnavailable`` when the cache server did not answer, or
    at once while its breaker is open.

    django-redis with ``IGNORE_EXCEPTIONS`` hides failures (a get answers None, an add False, a delete
    nothing); its client underneath raises them, so it is called directly. Other backends (local memory,
    files) cannot be unreachable and are called as they are.
    """
    if not isinstance(backend, DjangoRedisCache):
        return getattr(backend, method)(*args, **kwargs)
    health = _health_of(backend)
    health.used_at = time.monotonic()
    if health.keeper is None:
        _lease_keeper_start(backend, health)
    if not _admitted(health):
        raise CacheUnavailable("the cache failed recently and is left alone for now")
    try:
        result = getattr(backend.client, method)(*args, **kwargs)
    # django-redis wraps most failures in ConnectionInterrupted; a few methods (touch) let redis' through.
    except (ConnectionInterrupted, RedisConnectionError, RedisTimeoutError) as error:
        _breaker_trip(health, error)
        raise CacheUnavailable(str(error)) from error
    _breaker_reset(health)
    return result


def _epoch_timeout(backend: BaseCache) -> float | None:
    """The epoch's lifetime: a lease on Redis, which can miss invalidations; forever elsewhere."""
    if isinstance(backend, DjangoRedisCache):
        return _setting("CACHE_EPOCH_LEASE_SECONDS", CACHE_EPOCH_LEASE_SECONDS)
    return None


def _lease_keeper_start(backend: BaseCache, health: _Health) -> None:
    with _health_lock:
        if health.keeper is not None:
            return
        health.keeper = threading.Thread(
            target=_lease_keep, args=(backend, health), name="apm-cache-epoch-lease", daemon=True
        )
    health.keeper.start()


def _lease_keep(backend: BaseCache, health: _Health) -> None:
    """Renew the epoch's lease while Redis answers, four times per lease, for as long as this process
    uses the cache. A missing epoch is left missing: the next reader makes a new one."""
    while True:
        lease = _setting("CACHE_EPOCH_LEASE_SECONDS", CACHE_EPOCH_LEASE_SECONDS)
        time.sleep(lease / 4)
        if time.monotonic() - health.used_at > _LEASE_IDLE_SECONDS:
            with _health_lock:
                health.keeper = None
            return
        try:
            _call(backend, "touch", EPOCH_KEY, timeout=lease)
        except CacheUnavailable:
            continue


def _renewal_owe(backend: BaseCache) -> None:
    """An invalidation did not reach the cache: replace the epoch as soon as it answers again."""
    health = _health_of(backend)
    with _health_lock:
        health.renewal_owed = True
        health.backend = backend
        if health.renewer is not None and health.renewer.is_alive():
            return
        health.renewer = threading.Thread(
            target=_renew_until_done, args=(backend, health), name="apm-cache-epoch-renewal", daemon=True
        )
    logger.warning("cache_invalidation_lost")
    health.renewer.start()


def _renew(backend: BaseCache, health: _Health) -> bool:
    """Replace the epoch (every entry written before becomes unreachable); False if the cache is down."""
    try:
        _call(backend, "set", EPOCH_KEY, uuid.uuid4().hex, timeout=_epoch_timeout(backend))
    except CacheUnavailable:
        return False
    with _health_lock:
        health.renewal_owed = False
    logger.info("cache_epoch_renewed")
    return True


def _renew_until_done(backend: BaseCache, health: _Health) -> None:
    """Try the renewal each time the breaker lets a call through, until it succeeds."""
    while True:
        with _health_lock:
            if not health.renewal_owed:
                return
            wait = max(health.retry_at - time.monotonic(), 0.0) if health.open else 0.0
        time.sleep(max(wait, _POLL_LONGEST_SECONDS))
        if _renew(backend, health):
            return


def _usable(backend: BaseCache) -> bool:
    """Whether to trust the cache at all: not before the epoch this process owes is renewed."""
    health = _health.get(_identity(backend))
    if health is None or not health.renewal_owed:
        return True
    return _renew(backend, health)


def cache_reachable() -> bool:
    """False while the breaker is open (for ``CACHE_RETRY_SECONDS`` after a failure): callers that would
    only lose time on the cache skip it instead of waiting out a socket timeout."""
    health = _health.get(_identity(_backend()))
    return health is None or not health.open or time.monotonic() >= health.retry_at


def _renew_at_exit() -> None:
    """A short-lived process (``ingest_repo``, a shell) that lost an invalidation tries, as it exits, to
    replace the epoch for a few seconds more: no thread of it will be left to do it later."""
    deadline = time.monotonic() + _setting("CACHE_EXIT_RENEWAL_SECONDS", CACHE_EXIT_RENEWAL_SECONDS)
    for identity, health in list(_health.items()):
        if not health.renewal_owed or health.backend is None:
            continue
        while time.monotonic() < deadline and not _renew(health.backend, health):
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if health.renewal_owed:
            logger.error("cache_epoch_renewal_lost", cache=identity)


atexit.register(_renew_at_exit)


def _threads_forgotten_in_child() -> None:
    """A forked child (a Celery or gunicorn worker forked after its parent used the cache) has none of the
    parent's threads, and the lock may have been held at the fork: it starts its own lease keeper and
    renewer, under a lock of its own."""
    global _health_lock  # noqa: PLW0603  (replaced in the child only, before any of its threads exists)
    _health_lock = threading.Lock()
    for health in _health.values():
        health.keeper = None
        health.renewer = None
        if health.renewal_owed and health.backend is not None:
            _renewal_owe(health.backend)


os.register_at_fork(after_in_child=_threads_forgotten_in_child)


def cache_renewal_owed() -> bool:
    """Whether this process lost an invalidation and has not yet replaced the cache's epoch."""
    health = _health.get(_identity(_backend()))
    return health is not None and health.renewal_owed


class GuardedCache:
    """The default cache behind its breaker, for code that reads and writes it directly (the API's rate
    limits): while the breaker is open a get answers ``default`` and a set is dropped, at once, and a
    failure here opens the breaker for everyone (django-redis alone would hide it and wait each time)."""

    def get(self, key: str, default: Any = None) -> Any:
        try:
            value = _call(_backend(), "get", key, default)
        except CacheUnavailable:
            return default
        return default if value is None else value

    def set(self, key: str, value: Any, timeout: float | None = None) -> None:
        try:
            _call(_backend(), "set", key, value, timeout=timeout)
        except CacheUnavailable:
            return


def _window_keys(key: str, window: float, now: float) -> tuple[str, str]:
    """The counters at ``key`` of the window of ``window`` seconds holding ``now``, and of the one before."""
    index = int(now // window)
    return f"{key}:{index}", f"{key}:{index - 1}"


def window_count(key: str, *, window: float, now: float) -> tuple[int, int] | None:
    """Count one more at ``key`` in the current window of ``window`` seconds (windows start at multiples
    of it), and read the count of the window before; None while the cache does not answer.

    Counters, not lists: on Redis one round trip (INCR, EXPIRE and GET in a pipeline) of a few bytes,
    whatever the rate, and two requests counted at once are both counted.
    """
    backend = _backend()
    current, previous = _window_keys(key, window, now)
    keep = int(2 * window) + 1  # the window, and the next one that reads it as its previous
    if not isinstance(backend, DjangoRedisCache):
        backend.add(current, 0, timeout=keep)
        try:
            return backend.incr(current), int(backend.get(previous, 0))
        except ValueError:  # a cache that keeps nothing (APM_CACHE=none): nothing can be counted
            return None
    health = _health_of(backend)
    if not _admitted(health):
        return None
    try:
        client = backend.client.get_client(write=True)
        pipeline = client.pipeline(transaction=False)
        pipeline.incr(backend.client.make_key(current))
        pipeline.expire(backend.client.make_key(current), keep)
        pipeline.get(backend.client.make_key(previous))
        counted, _expiry, before = pipeline.execute()
    except (ConnectionInterrupted, RedisConnectionError, RedisTimeoutError) as error:
        _breaker_trip(health, error)
        return None
    _breaker_reset(health)
    return int(counted), int(before or 0)


def window_read(key: str, *, window: float, now: float) -> tuple[int, int] | None:
    """The counts ``window_count`` keeps at ``key`` (this window's, the last one's) without counting one
    more; None while the cache does not answer."""
    current, previous = _window_keys(key, window, now)
    try:
        found = _call(_backend(), "get_many", [current, previous])
    except CacheUnavailable:
        return None
    return int(found.get(current) or 0), int(found.get(previous) or 0)


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
        _renewal_owe(backend)
        return
    try:
        if keys:
            _call(backend, "delete_many", keys)
        for namespace in generations:
            _bump(backend, f"generation:{namespace}")
    except CacheUnavailable:
        _renewal_owe(backend)


def generation_bump_on_commit(namespace: str) -> None:
    """Bump ``namespace``'s generation now, and again once the current transaction commits.

    Now, so that the transaction's own later reads miss; again after the commit, because a reader that
    loads the rows in between (before the change is visible to it) stores what it read under the
    generation the first bump made, which the second leaves behind. Outside a transaction both happen
    at once.
    """
    generation_bump(namespace)
    transaction.on_commit(lambda: generation_bump(namespace))


def generation_key(namespace: str, *parts: object) -> str:
    """A cache key inside ``namespace``'s current generation."""
    suffix = ":".join(str(part) for part in parts)
    return f"{namespace}:g{generation_get(namespace)}:{suffix}"


# --- Entries checked in one round trip -----------------------------------------------------------------


def cache_shared() -> bool:
    """Whether every process reads the same cache (Redis). A local-memory cache is each process's own:
    an invalidation made in one process (a management command, another worker) never reaches the others."""
    return isinstance(_backend(), DjangoRedisCache)


@dataclass(frozen=True)
class Stamp:
    """The epoch and the namespace's generation a reader saw before reading the database: what an entry
    it stores is valid for. Read first, so a write committed meanwhile (which bumps the generation once it
    commits) leaves the entry behind, as with ``cached()``."""

    epoch: str
    generation: Any


def stamped_get(key: str, *, namespace: str) -> tuple[Any, Stamp | None]:
    """The value at ``key`` if stored under the current epoch and generation of ``namespace``, in one
    round trip (``cached()`` takes two: the generation, then the entry); else None. With it, the stamp to
    store a fresh value under, or None when the cache is down (then nothing is stored)."""
    backend = _backend()
    generation_at = f"generation:{namespace}"
    if not _usable(backend):
        return None, None
    try:
        found = _call(backend, "get_many", [key, generation_at, EPOCH_KEY])
        epoch = _epoch(backend, found)
        generation = found.get(generation_at)
        if generation is None:
            generation = generation_get(namespace)
    except CacheUnavailable:
        return None, None
    stamp = Stamp(epoch=epoch, generation=generation)
    entry = found.get(key)
    if isinstance(entry, tuple) and len(entry) == 3 and entry[:2] == (epoch, generation):
        return entry[2], stamp
    return None, stamp


def stamped_set(key: str, value: Any, *, stamp: Stamp | None, timeout: float | None) -> None:
    """Store ``value`` at ``key`` for ``timeout`` seconds, valid under ``stamp`` only."""
    if stamp is None:
        return
    try:
        _call(_backend(), "set", key, (stamp.epoch, stamp.generation, value), timeout=timeout)
    except CacheUnavailable:
        return


def _read_scope(key: str, fresh_for: float | None) -> tuple[str, float | None]:
    """``key`` and how long its entry stays fresh, in the current read scope.

    Computed from a replica that may lag, an entry is kept apart from the primary's, which readers pinned
    to the primary (a user who just wrote) read alone, and fresh for the lag allowed at most, so that a
    figure missing a write is not served long after the replica has it.
    """
    if not replica_reading():
        return key, fresh_for
    max_lag = float(settings.DATABASE_REPLICA_MAX_LAG)
    return f"{key}:replica", max_lag if fresh_for is None else min(fresh_for, max_lag)


def stamped(
    key: str, compute: Callable[[], T], *, namespace: str, family: str, timeout: float | None = None
) -> T:
    """``compute()`` remembered under ``namespace``'s generation, found in one round trip.

    For a cheap step over figures ``cached()`` keeps (the API's representation of a project's summary):
    no lock and no stale serving, since computing again is cheap; fresh for ``timeout`` (the cache's
    default when None, as the figures under it). A lookup found here counts as a ``hit`` of ``family``;
    one not found counts nothing here, as the ``cached()`` figures under it count themselves.
    """
    key, fresh_for = _read_scope(key, _backend().default_timeout if timeout is None else timeout)
    value, stamp = stamped_get(key, namespace=namespace)
    if value is not None:
        _count(family, "hit")
        return value
    value = compute()
    if value is not None:
        stamped_set(key, value, stamp=stamp, timeout=fresh_for)
    return value


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
        if not _call(backend, "add", EPOCH_KEY, epoch, timeout=_epoch_timeout(backend)):
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
        return


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
        return  # it expires on its own (CACHE_LOCK_SECONDS)


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
    key, fresh_for = _read_scope(key, backend.default_timeout if timeout is None else timeout)
    try:
        found = _call(backend, "get_many", [key, f"meta:{key}", EPOCH_KEY])
        epoch = _epoch(backend, found)
        entry = _entry(found, key, epoch)
        if entry is not None and entry.fresh:
            _count(family, "hit")
            return entry.value
        lock = _lock_take(backend, key)
    except CacheUnavailable:
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
        _count(family, "miss")
        return compute()
    _count(family, "miss")
    return _compute_and_store(backend, key, compute, epoch=epoch, fresh_for=fresh_for, lock=lock)
