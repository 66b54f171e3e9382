"""Read replicas: which reads may go to ``DATABASE_REPLICA_URL``, and when they go to the primary instead.

Explicit, not automatic. A read goes to the replica only inside ``replica_reads`` (a decorator on the
read-only selectors that opt in: the dashboard, the analytics panels, exports' reads, the big lists);
every other read stays on the primary. Sending every read to a replica by default would make each
``get()`` before a ``save()``, each uniqueness check and each row read back after a write a possible
stale read, in code written for one database; the opted-in selectors are the heavy reads that tolerate a
bounded staleness, and they are where a replica earns its keep.

Inside ``replica_reads`` the primary still answers when:

* the request or task has written (read-your-writes): ``ReplicaRouter.db_for_write`` marks the current
  read scope, which ``apm.read_your_writes`` opens per request and per Celery task;
* a transaction is open on the primary (a read inside it must see the transaction's own rows);
* the user wrote in an earlier request recently (``apm.read_your_writes`` pins them to the primary for
  ``replica_pin_seconds()``);
* the replica lags more than ``DATABASE_REPLICA_MAX_LAG`` seconds, or does not answer. Both are asked at
  most every ``DATABASE_REPLICA_CHECK_SECONDS`` (``_ReplicaHealth``), on a connection of the check's own
  with a short timeout, so a replica that is down costs no request a connect timeout: its reads go to the
  primary at once, and one log line says so when it goes (``database_replica_unavailable``) and when it
  is back (``database_replica_available``).

A replica that fails in the middle of a decorated selector (it went down between two checks) is marked
down and the selector runs again on the primary: the selectors that opt in only read. So is one that
stops answering (frozen): no read waits on the replica much beyond ``DATABASE_REPLICA_TIMEOUT``
(``_ReadDeadline``, and the connection's timeouts in ``config.settings``).

Without ``DATABASE_REPLICA_URL`` there is no ``replica`` alias and no router: nothing here runs.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import structlog
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresqlDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.models import QuerySet
from django.db.utils import load_backend

from apm.middleware import database_unavailable
from monitoring.deadline import call_within
from monitoring.metrics import DATABASE_REPLICA_FALLBACKS, DATABASE_REPLICA_LAG, DATABASE_REPLICA_USABLE

logger = structlog.get_logger(__name__)

PRIMARY = "default"
REPLICA = "replica"
# How long the health check waits for the replica to connect and answer (libpq counts whole seconds).
CHECK_TIMEOUT_SECONDS = 2

P = ParamSpec("P")
T = TypeVar("T")


def replica_configured() -> bool:
    """Whether a replica is configured at all (``DATABASE_REPLICA_URL``)."""
    return REPLICA in settings.DATABASES


def replica_pin_seconds() -> float:
    """How long a user who wrote reads only the primary in the replica-reading selectors.

    A write at T is on a replica lagging ``MAX_LAG`` at most by T + MAX_LAG (+ CHECK_SECONDS, the age of
    the lag measured). Cached figures computed from the replica stay fresh ``MAX_LAG`` more
    (``apm.cache.cached``): one computed just before the write reached the replica is served until then.
    Past twice the bound plus a check, nothing the user reads predates their write.
    """
    return 2 * float(settings.DATABASE_REPLICA_MAX_LAG) + float(settings.DATABASE_REPLICA_CHECK_SECONDS)


# --- The read scope of a request or task --------------------------------------------------------------


@dataclass
class ReadScope:
    """What the current request or task did that decides where its reads go."""

    # Inside replica_reads (a depth: decorated selectors call each other).
    wanted: int = 0
    # Wrote anything on the primary: every read after this goes there.
    wrote: bool = False
    # The router handed out the replica during the current outermost replica_reads.
    used_replica: bool = False
    # The replica cancelled a read of this scope (replica_cancelled): the rest of it reads the primary.
    cancelled: bool = False
    # Asked once per scope, when a read first wants the replica: whether the user wrote recently
    # (apm.read_your_writes installs it for signed-in requests).
    pin_check: Callable[[], bool] | None = None
    pinned: bool | None = None

    def is_pinned(self) -> bool:
        if self.pinned is None:
            self.pinned = bool(self.pin_check()) if self.pin_check is not None else False
        return self.pinned


_scope: ContextVar[ReadScope | None] = ContextVar("apm_read_scope", default=None)


def read_scope() -> ReadScope:
    """The current read scope; outside a request or task (a command, a shell), one for the whole
    thread, so that a command's reads after its first write go to the primary too."""
    scope = _scope.get()
    if scope is None:
        scope = ReadScope()
        _scope.set(scope)
    return scope


def read_scope_enter(*, pin_check: Callable[[], bool] | None = None) -> Token[ReadScope | None]:
    """Open a fresh read scope; ``read_scope_exit`` with the token returned closes it (Celery's signals
    open and close a task's in two calls)."""
    return _scope.set(ReadScope(pin_check=pin_check))


def read_scope_exit(token: Token[ReadScope | None]) -> None:
    _scope.reset(token)


@contextmanager
def read_scope_open(*, pin_check: Callable[[], bool] | None = None) -> Iterator[ReadScope]:
    """A fresh read scope for one request or task: nothing written yet."""
    scope = ReadScope(pin_check=pin_check)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


# --- The replica's health: up, and how far behind -------------------------------------------------------

# The primary's WAL position, read first: every transaction committed before the check began lies
# before it.
_POSTGRESQL_PRIMARY_POSITION = "SELECT pg_current_wal_lsn()::text"
_POSTGRESQL_LAG = """
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN pg_last_wal_replay_lsn() >= %s::pg_lsn THEN 0
    WHEN NOT EXISTS (
        SELECT 1 FROM pg_stat_wal_receiver
        WHERE pid IS NOT NULL AND coalesce(status, 'streaming') = 'streaming'
    ) THEN NULL
    ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())
END
"""
# Compared with the primary, not with what the standby itself received: a standby that stopped
# receiving WAL (its primary_conninfo wrong, its walreceiver stuck, the network cut) has replayed all
# it received and would look caught up forever.
# Holds the primary's position: no lag, however long ago the primary last committed (an idle primary
# writes nothing new, and its standby misses nothing). Behind and not streaming: it will not catch up,
# NULL (too far behind). Behind and streaming: the age of the newest transaction replayed, which
# overstates the lag when the primary was idle before its latest write (the safe side). Unknown (NULL:
# nothing replayed since the standby started, while WAL waits): too far behind.
# pg_stat_wal_receiver shows its status only to superusers and pg_read_all_stats; other roles see the
# receiver's pid alone, which says a receiver runs (the lag above then tells whether it keeps up).


def _probe(settings_dict: dict[str, Any], name: str) -> BaseDatabaseWrapper:
    """A connection of the check's own to the server of ``settings_dict``, with short timeouts.

    Not the pool's: while the replica is down the pool would make the check wait ``DATABASE_POOL_TIMEOUT``
    and then reconnect at growing intervals.
    """
    probe = copy.deepcopy(settings_dict)
    options = probe.setdefault("OPTIONS", {})
    options.pop("pool", None)
    options["connect_timeout"] = CHECK_TIMEOUT_SECONDS
    # A server that accepts and never answers: the check gives up on it (call_within), and the server
    # ends the query itself rather than leave the check's thread waiting on it.
    if probe["ENGINE"].endswith("postgresql"):
        options["options"] = f"-c statement_timeout={CHECK_TIMEOUT_SECONDS * 1000}"
    else:
        options["read_timeout"] = CHECK_TIMEOUT_SECONDS
    wrapper: BaseDatabaseWrapper = load_backend(probe["ENGINE"]).DatabaseWrapper(probe, name)
    return wrapper


def _lag_read(primary_settings: dict[str, Any], replica_settings: dict[str, Any]) -> float:
    """Seconds the replica is behind its primary (``math.inf``: it does not keep up at all)."""
    replica = _probe(replica_settings, "replica-check")
    try:
        if replica.vendor != "postgresql":
            with replica.cursor() as cursor:
                return _mysql_lag(cursor)
        primary = _probe(primary_settings, "replica-check-primary")
        try:
            with primary.cursor() as cursor:
                cursor.execute(_POSTGRESQL_PRIMARY_POSITION)
                position = cursor.fetchone()[0]
        finally:
            primary.close()
        with replica.cursor() as cursor:
            cursor.execute(_POSTGRESQL_LAG, [position])
            value = cursor.fetchone()[0]
            return math.inf if value is None else float(value)
    finally:
        replica.close()


def _mysql_lag(cursor: Any) -> float:
    """MySQL/MariaDB: ``Seconds_Behind_Master`` (``_Source`` on MySQL 8) of the replication status; no
    status at all is a server that replicates nothing (a proxy, or a primary named as replica): no lag.

    A replica whose I/O thread is not connected to its primary (``Connecting``, ``No``) receives nothing:
    it does not keep up, whatever the delay it shows for what it received (MySQL may show 0 once the
    relay log is applied). NULL is replication stopped.
    """
    try:
        cursor.execute("SHOW REPLICA STATUS")
    except Exception:  # MariaDB before 10.5, MySQL before 8.0.22 know only the older name
        cursor.execute("SHOW SLAVE STATUS")
    row = cursor.fetchone()
    if row is None:
        return 0.0
    names = [column[0] for column in cursor.description]
    for name in ("Replica_IO_Running", "Slave_IO_Running"):
        if name in names and str(row[names.index(name)]) != "Yes":
            return math.inf
    for name in ("Seconds_Behind_Source", "Seconds_Behind_Master"):
        if name in names:
            value = row[names.index(name)]
            return math.inf if value is None else float(value)  # NULL: replication is stopped
    return math.inf


class _ReplicaHealth:
    """Whether the replica may serve reads now: it answered the last check, within the lag allowed.

    One thread asks at a time, at most every ``DATABASE_REPLICA_CHECK_SECONDS``; the others go on with
    the last answer meanwhile (until the first answer: the primary), so no request waits on a replica
    that is down except the one asking, for ``2 x CHECK_TIMEOUT_SECONDS + 1`` at most (the primary's
    WAL position, then the replica).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_check = 0.0
        self.checking = False
        self.state = "unknown"  # "usable", "lagging", "down"
        self.lag: float | None = None
        DATABASE_REPLICA_LAG.set(-1)  # unknown until the first check

    def reset(self) -> None:
        """Forget what is known: the next read asks the replica again (tests, a changed setting)."""
        with self.lock:
            self.next_check = 0.0
            self.state = "unknown"
            self.lag = None

    def usable(self) -> bool:
        now = time.monotonic()
        with self.lock:
            due = now >= self.next_check and not self.checking
            if due:
                self.checking = True
        if due:
            try:
                self._check()
            finally:
                with self.lock:
                    self.checking = False
                    self.next_check = time.monotonic() + float(settings.DATABASE_REPLICA_CHECK_SECONDS)
        return self.state == "usable"

    def _check(self) -> None:
        # A test mirror's included.
        primary_settings, replica_settings = (
            connections[PRIMARY].settings_dict,
            connections[REPLICA].settings_dict,
        )
        try:
            # Two servers asked one after the other, each within CHECK_TIMEOUT_SECONDS.
            lag = call_within(
                2 * CHECK_TIMEOUT_SECONDS + 1,
                lambda: _lag_read(primary_settings, replica_settings),
                name="replica-check",
            )
        except Exception as error:  # whatever the failure, the replica cannot serve reads now
            self._become("down", error=f"{type(error).__name__}: {error}".strip()[:300])
            return
        self.lag = lag
        DATABASE_REPLICA_LAG.set(lag if math.isfinite(lag) else -1)
        if lag > float(settings.DATABASE_REPLICA_MAX_LAG):
            self._become("lagging", lag=lag)
        else:
            self._become("usable", lag=lag)

    def failed(self, error: BaseException) -> None:
        """A read on the replica found it gone: reads go to the primary until the next check."""
        with self.lock:
            self.next_check = time.monotonic() + float(settings.DATABASE_REPLICA_CHECK_SECONDS)
        self._become("down", error=str(error).strip()[:300])

    def _become(self, state: str, **details: Any) -> None:
        with self.lock:
            previous, self.state = self.state, state
            if state == "down":
                self.lag = None
        DATABASE_REPLICA_USABLE.set(1 if state == "usable" else 0)
        if state == "down":
            DATABASE_REPLICA_LAG.set(-1)  # unknown: not the last figure measured before it went
        if state == previous:
            return
        max_lag = float(settings.DATABASE_REPLICA_MAX_LAG)
        if state == "down":
            logger.warning("database_replica_unavailable", reads_to="primary", **details)
        elif state == "lagging":
            logger.warning("database_replica_lagging", reads_to="primary", max_lag=max_lag, **details)
        else:
            if previous == "down":
                # The pool still holds connections from before the outage and would reconnect only at
                # growing intervals: start a fresh one, as apm.middleware does for the primary.
                connection = connections[REPLICA]
                if isinstance(connection, PostgresqlDatabaseWrapper):
                    connection.close_pool()
            logger.info("database_replica_available", reads_to="replica", **details)


replica_health = _ReplicaHealth()


# --- Bounded waits on the replica ------------------------------------------------------------------------

# How much longer than the server's statement_timeout a read waits before giving the server up: a server
# that answers ends a slow statement itself, with its own error, first.
READ_DEADLINE_GRACE_SECONDS = 2.0


class _ReadDeadline:
    """Breaks ``raw``'s socket if the statement under way has no answer within ``seconds``.

    A frozen server (its processes stopped, a VM paused) keeps its sockets: the kernel acknowledges what
    is sent and answers keepalives, so neither TCP timeout ends the wait, and the server's
    statement_timeout never runs. libpq has no client-side limit on a statement, so without this the
    request waits forever. Shutting the socket down makes libpq's read fail at once: psycopg raises
    OperationalError, ``replica_reads`` marks the replica down and reads the primary, and the pool
    discards the broken connection.
    """

    def __init__(self, raw: Any, seconds: float) -> None:
        self.raw = raw
        self.seconds = seconds
        self.lock = threading.Lock()
        self.finished = False
        self.timer = threading.Timer(seconds, self._expire)
        self.timer.daemon = True

    def __enter__(self) -> _ReadDeadline:
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Under the lock: once the statement is over the timer never touches the socket, which the
        # connection may by then use for another statement.
        with self.lock:
            self.finished = True
        self.timer.cancel()

    def _expire(self) -> None:
        with self.lock:
            if self.finished:
                return
            try:
                descriptor = self.raw.pgconn.socket
                # A duplicate descriptor: shutdown acts on the socket both share; closing ours leaves
                # libpq's for it to close.
                with socket.socket(fileno=os.dup(descriptor)) as shared:
                    shared.shutdown(socket.SHUT_RDWR)
            except Exception:  # closed meanwhile: nothing left to end
                return
        logger.warning("database_replica_read_abandoned", seconds=self.seconds, reads_to="primary")


def _read_deadline(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    """Execute wrapper of every replica connection (PostgreSQL): ``_ReadDeadline`` around each statement."""
    raw = context["connection"].connection
    seconds = float(settings.DATABASE_REPLICA_TIMEOUT) + READ_DEADLINE_GRACE_SECONDS
    with _ReadDeadline(raw, seconds):
        return execute(sql, params, many, context)


def _replica_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # First in the list: Django's execute_wrapper() context manager pops the last one on exit, which
    # must stay the one it pushed (a test's recorder, a query counter).
    wrappers = connection.execute_wrappers
    if connection.alias == REPLICA and connection.vendor == "postgresql" and _read_deadline not in wrappers:
        wrappers.insert(0, _read_deadline)


# MySQL/MariaDB needs none of this: its client's read_timeout is set on the replica (config.settings).
connection_created.connect(_replica_connection_created, dispatch_uid="apm_replica_read_deadline")


# --- Routing --------------------------------------------------------------------------------------------


# SQLSTATEs of a statement a standby that answers cancelled: a conflict with the replay of the primary's
# WAL (serialization_failure: "canceling statement due to conflict with recovery"; hot_standby_feedback
# makes them rare, not impossible) and DATABASE_REPLICA_TIMEOUT's statement_timeout (query_canceled).
# Not the replica's fault nor the query's: the primary answers the same read.
_REPLICA_CANCEL_SQLSTATES = frozenset({"40001", "57014"})


def replica_cancelled(error: BaseException) -> bool:
    """Whether ``error`` is a read the replica cancelled (it answers: the replica stays in use)."""
    return getattr(error.__cause__, "sqlstate", "") in _REPLICA_CANCEL_SQLSTATES


def replica_read_alias(*, counted: bool = True) -> str:
    """Where a read made now goes: ``REPLICA`` or ``PRIMARY``, by the rules of the module docstring.

    ``counted``: a read that falls back to the primary counts in ``apm_db_replica_fallbacks_total``.
    """
    if not replica_configured():
        return PRIMARY
    scope = read_scope()
    if not scope.wanted or scope.wrote or connections[PRIMARY].in_atomic_block:
        return PRIMARY
    reason = ""
    if scope.cancelled:
        reason = "cancelled"
    elif scope.is_pinned():
        reason = "pinned"
    elif not replica_health.usable():
        reason = replica_health.state
    if reason:
        if counted:
            DATABASE_REPLICA_FALLBACKS.labels(reason=reason).inc()
        return PRIMARY
    scope.used_replica = True
    return REPLICA


def read_connection() -> BaseDatabaseWrapper:
    """The connection a raw-SQL read uses: ``django.db.connection`` would always be the primary's."""
    return connections[replica_read_alias()]


def replica_reading() -> bool:
    """Whether reads made now go to the replica (apm.cache keeps what they compute apart)."""
    return replica_configured() and replica_read_alias(counted=False) == REPLICA


class ReplicaRouter:
    """``DATABASE_ROUTERS`` entry, set only when ``DATABASE_REPLICA_URL`` is."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str:
        return replica_read_alias()

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        # Every write Django routes (save, delete, update, bulk_create, get_or_create, select_for_update)
        # comes here first: from now on this request or task reads what it wrote.
        read_scope().wrote = True
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the same rows on both: an object read from the replica relates to the primary's

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db != REPLICA  # a standby is read-only: it gets its schema from the primary's WAL


# --- Opting in -------------------------------------------------------------------------------------------


def replica_reads(function: Callable[P, T]) -> Callable[P, T]:
    """Let ``function``'s reads go to the replica (subject to the rules above).

    ``function`` must only read (a cache entry aside): if the replica fails under it, it runs again on
    the primary. Evaluate querysets inside it; one returned unevaluated is read where its caller reads.
    """

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if not replica_configured():
            return function(*args, **kwargs)
        scope = read_scope()
        if scope.wanted:  # nested: the outermost one decides and retries
            return function(*args, **kwargs)
        scope.wanted += 1
        scope.used_replica = False
        try:
            return function(*args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            if not scope.used_replica:
                raise
            if database_unavailable(error):
                replica_health.failed(error)  # marked down: every read of the second run goes to the primary
                DATABASE_REPLICA_FALLBACKS.labels(reason="failed").inc()
            elif replica_cancelled(error):
                scope.cancelled = True  # the replica stays in use for others; this scope reads the primary
                DATABASE_REPLICA_FALLBACKS.labels(reason="cancelled").inc()
                logger.info("database_replica_read_cancelled", reads_to="primary", error=str(error)[:300])
            else:
                raise
        finally:
            scope.wanted -= 1
        return function(*args, **kwargs)

    return wrapper


def replica_reads_since(witness: QuerySet[Any], function: Callable[[], T]) -> T:
    """``function()`` reading the replica even though this task has written, provided the replica
    already holds ``witness`` (a row written when the work was asked for: an export's job).

    For background work asked for by a request: whatever the user changed before asking is older than
    the witness row, so a replica that has it has their changes too. The task's own bookkeeping writes
    since (claiming the job) are not what it reads. A replica without the witness yet, down or lagging:
    the primary, as any read after a write.
    """
    if not replica_configured():
        return function()
    with read_scope_open():
        if not _replica_holds(witness):
            # Not caught up with the request: this work reads what its task wrote, on the primary.
            read_scope().wrote = True
        return replica_reads(function)()


def _replica_holds(witness: QuerySet[Any]) -> bool:
    """Whether reads may go to the replica and the replica already holds ``witness``."""
    scope = read_scope()
    scope.wanted += 1
    try:
        if replica_read_alias() != REPLICA:
            return False
        try:
            return witness.using(REPLICA).exists()
        except (OperationalError, InterfaceError) as error:
            if not database_unavailable(error):
                raise
            replica_health.failed(error)
            return False
    finally:
        scope.wanted -= 1
