"""System checks of the deployment's shape (``manage.py check``; ``make check-deploy`` in CI).

Each one is a Warning in development and an Error under the production settings (``APM_PRODUCTION``),
where ``manage.py check --deploy --fail-level WARNING`` stops a release that would run this way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.core import checks


def _level(*, production_error: bool) -> Callable[..., checks.CheckMessage]:
    return checks.Error if production_error and getattr(settings, "APM_PRODUCTION", False) else checks.Warning


# The names of this machine's loopback interface: one Redis server, however the URL spells it.
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def redis_location(url: str) -> tuple[str, int, int] | None:
    """``(host, port, database)`` of a ``redis://`` URL (database 0 when it names none); None otherwise.

    Read as redis-py and Celery read it: a ``?db=`` in the query wins over the path's database, and
    ``localhost``, ``127.0.0.1`` and ``::1`` are the same server."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return None
    path = parts.path.strip("/")
    database = int(path) if path.isdigit() else 0
    query_db = parse_qs(parts.query).get("db", [""])[-1].strip()
    if query_db.isdigit():
        database = int(query_db)
    host = (parts.hostname or "localhost").lower()
    return ("localhost" if host in _LOOPBACK else host, parts.port or 6379, database)


@checks.register(checks.Tags.caches)
def results_apart_from_cache(app_configs: Any = None, **_: Any) -> list[checks.CheckMessage]:
    """Celery's results (and the chord counters that finish ingestion runs) must not share the cache's
    Redis database: the cache evicts the least recently used keys (allkeys-lru) and persists nothing."""
    cache_url = str(getattr(settings, "REDIS_URL", "") or "")
    results = redis_location(str(settings.CELERY_RESULT_BACKEND or ""))
    if not cache_url or results is None or results != redis_location(cache_url):
        return []
    return [
        _level(production_error=True)(
            "CELERY_RESULT_BACKEND is the cache's Redis database (REDIS_URL): its eviction would drop "
            "task results and the counters that finish ingestion runs.",
            hint="Point CELERY_RESULT_BACKEND at the broker's Redis (persistent, maxmemory-policy "
            "noeviction), or leave it unset to use the broker's. docs/operations.md, 'Two Redis servers'.",
            id="apm.E001",
        )
    ]


@checks.register(checks.Tags.database)
def pool_covers_threads(app_configs: Any = None, **_: Any) -> list[checks.CheckMessage]:
    """A gunicorn process whose threads outnumber its pool makes the extra threads wait
    ``DATABASE_POOL_TIMEOUT`` for a connection, then fail."""
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    # Without a server's thread count, the pool was sized for a command's own threads: nothing to check.
    threads = getattr(settings, "APM_SERVER_THREADS", None)
    if not isinstance(pool, dict) or threads is None:
        return []
    if pool["max_size"] >= threads:
        return []
    return [
        checks.Warning(
            f"The database pool holds at most {pool['max_size']} connections for {threads} threads: "
            "the threads beyond it wait DATABASE_POOL_TIMEOUT for a connection, then fail.",
            hint="Leave DATABASE_POOL_MAX_SIZE unset (it follows GUNICORN_THREADS) or raise it to the "
            "threads; docs/operations.md has the arithmetic against max_connections.",
            id="apm.W002",
        )
    ]
