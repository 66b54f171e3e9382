"""A call that answers within a deadline or not at all: what probes and scrapes ask of the database.

A database that accepts connections but never answers (PgBouncer queueing every query while its server
connections are busy, PostgreSQL with every backend held) has no timeout of its own on the client's
side: ``SELECT 1`` waits as long as the server does. A probe or a scrape that waits with it holds one
of the web process's few threads, and with every thread held /healthz stops answering and Kubernetes
restarts the pod in the middle of the incident. So the call runs in a daemon thread of its own, and its
caller waits for it ``seconds`` at most; a call still running then finishes (or fails) on its own.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
# How long a cancel request may take to reach the server before it is given up.
CANCEL_TIMEOUT_SECONDS = 2.0


class DeadlineExceeded(TimeoutError):
    """The call did not answer in time (it may still be running, in its own thread)."""


def call_within(seconds: float, function: Callable[[], T], *, name: str) -> T:
    """``function()``'s value or exception if it ends within ``seconds``, else DeadlineExceeded."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the caller, who waited for it
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"apm-{name}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise DeadlineExceeded(f"{name} did not answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


@contextlib.contextmanager
def cancelled_after(seconds: float, connection: Any) -> Iterator[None]:
    """Cancel what ``connection`` (psycopg's) still runs ``seconds`` from now: past its caller's deadline
    nobody reads the answer, and cancelling frees the server's side (and PgBouncer's queue) for others."""
    timer = threading.Timer(seconds, _cancel, args=(connection,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _cancel(connection: Any) -> None:
    with contextlib.suppress(Exception):  # a connection that closed meanwhile, a server already gone
        connection.cancel_safe(timeout=CANCEL_TIMEOUT_SECONDS)
