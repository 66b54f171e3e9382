"""A database that does not answer is an outage to wait out, not a bug: 503 with Retry-After, not 500.

While PostgreSQL restarts, fails over or is cut off, every view that reads fails with Django's
``OperationalError`` or ``InterfaceError``. Answered as a 500, each would log a traceback and tell
clients and the load balancer that APM is broken; it is only waiting. ``DatabaseUnavailableMiddleware``
answers those requests 503 with ``Retry-After``: in the API's error shape under /api/, and with a
small page elsewhere (``apm/unavailable.html``, rendered without the database). Other database errors
(a constraint, a deadlock, a statement timeout) stay what they are.

DRF hands the exceptions it does not know to Django, so API views come through here too. A signed-in
page's user is read before the view, by django-structlog's middleware (it logs the user's id), where a
failure would be a 500 whatever the view does: this middleware, placed just before it, reads the user
first, and answers 503 itself when it cannot. Connections
the pool kept from before an outage are checked before use (``CONN_HEALTH_CHECKS`` in
config/settings/base.py), so the requests after it do not fail on them.

During an outage each request would wait ``DATABASE_POOL_TIMEOUT`` (5 s) for a connection the pool
cannot open, holding one of the process's few threads all that time: a handful of them and /healthz
itself goes unanswered. Once a request has found the database unavailable (that first one waits the
pool's timeout), this process is in an outage: the pool's wait is cut to ``OUTAGE_POOL_WAIT_SECONDS``,
and a request at most every ``OUTAGE_PROBE_SECONDS`` first asks the database on a connection of its own
whether it answers again. When it does, the pool is replaced by a fresh one: the old one would only try
to reconnect at growing intervals (1, 2, 4... seconds), answering 503 for a while after the database
is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

import structlog
from django.contrib.auth.models import AnonymousUser
from django.db import InterfaceError, OperationalError, connections
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresqlDatabaseWrapper
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.functional import SimpleLazyObject

from monitoring.checks import database_probe

logger = structlog.get_logger(__name__)

# How long clients are asked to wait: about what a PostgreSQL restart or failover takes.
RETRY_AFTER_SECONDS = 30
DETAIL = "The service is briefly unavailable. Try again in a moment."

# While the database is known not to answer, how long a request waits for a connection from the pool,
# and how often a request asks the database whether it answers again. The wait is short because the
# threads are few: under load every one of them is taken by requests that will fail, and /healthz queues
# behind them in gunicorn. At 1 s, twelve clients on a process of four threads kept the liveness probe
# waiting 2.5-3.0 s (its timeout is 3 s); at 0.1 s, 0.2-0.5 s (tests/faults/test_liveness_outage.py).
OUTAGE_POOL_WAIT_SECONDS = 0.1
OUTAGE_PROBE_SECONDS = 1.0

# SQLSTATEs of a server that is going away or not there yet: class 08 (connection exception), and
# admin_shutdown, crash_shutdown and cannot_connect_now (starting up or recovering).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
# MySQL/MariaDB client errors: can't connect (local, TCP), server has gone away, lost connection.
_UNAVAILABLE_MYSQL_CODES = frozenset({2002, 2003, 2006, 2013})


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached (refused, lost, shutting down), as opposed
    to a query that failed on a database that answers."""
    if isinstance(error, InterfaceError):
        return True  # the connection is closed or broken
    if not isinstance(error, OperationalError):
        return False
    driver = error.__cause__  # Django re-raises the driver's error from its own
    sqlstate = getattr(driver, "sqlstate", "")
    if sqlstate:
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    if type(driver).__module__.startswith(("psycopg", "psycopg_pool")):
        # No SQLSTATE: raised by the client itself (connection refused or lost, no connection from the
        # pool in time), never by a server that answered.
        return True
    args: tuple[object, ...] = getattr(driver, "args", ())
    return bool(args) and args[0] in _UNAVAILABLE_MYSQL_CODES


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """The 503 answer: JSON in the API's error shape under /api/, a plain page elsewhere."""
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": DETAIL}, status=503)
    else:
        # No request context: its processors would read the session and the user, from the database.
        response = HttpResponse(render_to_string("apm/unavailable.html", {"detail": DETAIL}), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class _Outage:
    """Whether this process has found the database unavailable, and when to ask it again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.known = False
        self.probe_at = 0.0

    def begin(self) -> None:
        with self.lock:
            if self.known:
                return
            self.known = True
            self.probe_at = time.monotonic() + OUTAGE_PROBE_SECONDS
            pool = getattr(connections["default"], "pool", None)  # psycopg's, with PostgreSQL pooling
            if pool is not None:
                pool.timeout = min(pool.timeout, OUTAGE_POOL_WAIT_SECONDS)
        logger.warning("database_outage_began", pool_wait_seconds=OUTAGE_POOL_WAIT_SECONDS)

    def over(self) -> bool:
        """Whether the database answers again (asked at most every ``OUTAGE_PROBE_SECONDS``); if so, the
        outage ends here and the pool is replaced."""
        with self.lock:
            if not self.known:
                return True
            if time.monotonic() < self.probe_at:
                return False
            self.probe_at = time.monotonic() + OUTAGE_PROBE_SECONDS
        try:
            database_probe()
        except Exception:  # any failure of the probe means: still away
            return False
        with self.lock:
            if not self.known:
                return True
            self.known = False
            connection = connections["default"]
            if isinstance(connection, PostgresqlDatabaseWrapper):
                # Connections still out of the old pool are closed when their requests give them back.
                connection.close_pool()
        logger.info("database_outage_ended")
        return True


_outage = _Outage()


class DatabaseUnavailableMiddleware:
    """Answer 503 instead of 500 when a view fails because the database does not answer."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _outage.known:
            _outage.over()
        try:
            _user_read(request)
        except (OperationalError, InterfaceError) as error:
            if not database_unavailable(error):
                raise
            request.user = AnonymousUser()  # the middleware and handlers after this one read it too
            return self._unavailable(request, error)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_unavailable(exception):
            return None
        return self._unavailable(request, exception)

    @staticmethod
    def _unavailable(request: HttpRequest, error: Exception) -> HttpResponse:
        _outage.begin()
        # A line per request, without the traceback: the cause is known and /readyz reports it too.
        logger.warning("database_unavailable", path=request.path, error=str(error).strip()[:300])
        return unavailable_response(request)


def _user_read(request: HttpRequest) -> None:
    """Read the request's user (from the session, and the database when one is signed in) now, as
    django-structlog's middleware is about to. Like it, keep a view that never reads the user from
    marking the session accessed (which would add ``Vary: Cookie`` to its answer)."""
    session = getattr(request, "session", None)
    accessed = session.accessed if session is not None else None
    user = request.user
    user.is_authenticated  # noqa: B018  (evaluates the lazy user: this is where the database is read)
    if session is not None and accessed is False:

        def user_get() -> Any:
            session.accessed = True
            return user

        request.user = cast("AnonymousUser", SimpleLazyObject(user_get))  # read as the user it wraps
        session.accessed = False
