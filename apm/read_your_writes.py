"""Read-your-writes for the replica-reading selectors, per request, per user and per Celery task.

``apm.replicas`` sends a read to the replica only while the current read scope has not written. The
scope is opened here: one per request (``ReplicaReadScopeMiddleware``) and one per task a worker runs
(Celery's ``task_prerun``/``task_postrun``). A task run eagerly inside a request is part of that request
and keeps its scope: it reads what the request wrote.

Across requests: a signed-in user whose request wrote is pinned to the primary for
``replica_pin_seconds()`` (twice ``DATABASE_REPLICA_MAX_LAG`` plus a check), by a key in the shared cache,
so their next pages show what they just changed even from another web process, or through the API. While
the cache does not answer, nobody can be known unpinned: every signed-in user reads the primary.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import Token
from typing import Any

from celery.signals import task_postrun, task_prerun
from django.http import HttpRequest, HttpResponse

from apm.cache import GuardedCache, cache_reachable
from apm.replicas import (
    ReadScope,
    read_scope_enter,
    read_scope_exit,
    read_scope_open,
    replica_configured,
    replica_pin_seconds,
)


def _pin_key(user_id: Any) -> str:
    return f"replica:pin:user:{user_id}"


def _signed_in_id(request: HttpRequest) -> Any | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return user.pk


def user_pinned(request: HttpRequest) -> bool:
    """Whether ``request``'s user wrote recently (or cannot be known not to have)."""
    user_id = _signed_in_id(request)
    if user_id is None:
        return False
    if not cache_reachable():
        return True
    if GuardedCache().get(_pin_key(user_id)) is not None:
        return True
    return not cache_reachable()  # the get itself failed: unknown


def user_pin(request: HttpRequest) -> None:
    """Pin ``request``'s user to the primary: their write may not be on the replica yet."""
    user_id = _signed_in_id(request)
    if user_id is not None:
        GuardedCache().set(_pin_key(user_id), 1, timeout=replica_pin_seconds())


class ReplicaReadScopeMiddleware:
    """A fresh read scope per request; a request that wrote pins its user to the primary for a while."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not replica_configured():
            return self.get_response(request)
        with read_scope_open(pin_check=lambda: user_pinned(request)) as scope:
            response = self.get_response(request)
            if scope.wrote:
                user_pin(request)
        return response


# Celery task id -> the token that closes the task's scope (a worker process runs several at once in
# threads pools; ids are unique).
_task_scopes: dict[str, Token[ReadScope | None]] = {}


@task_prerun.connect(dispatch_uid="apm_read_scope_open")
def _task_scope_open(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    if not replica_configured() or task_id is None or task is None or task.request.is_eager:
        return
    _task_scopes[task_id] = read_scope_enter()


@task_postrun.connect(dispatch_uid="apm_read_scope_close")
def _task_scope_close(task_id: str | None = None, **kwargs: Any) -> None:
    token = _task_scopes.pop(task_id or "", None)
    if token is not None:
        read_scope_exit(token)
