"""Queueing Celery tasks by name.

A service that queues work names the task instead of importing it: the task modules call the services,
so the services cannot import them back without a cycle. Task names are stable anyway (queued messages
and the beat schedule's rows carry them), and each one is declared once, as a constant of the service
that queues it, which its task module uses in ``@shared_task(name=...)``.

A message the broker did not take raises ``BrokerUnavailable`` at once (the publish retry policy and
the connection and socket timeouts in config.settings keep that to seconds, for a broker that is down
and for one that hangs): the service that queued it removes what it
recorded for the work, and the API answers 503 with ``Retry-After`` (it is an ``APIException``, which the
project's exception handler shapes like every other error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from celery import current_app
from celery.result import AsyncResult
from django.db import transaction
from kombu.exceptions import ChannelError
from kombu.exceptions import OperationalError as KombuOperationalError
from rest_framework import status
from rest_framework.exceptions import APIException

# How long a client is told to wait before asking again when the broker is down (Retry-After, seconds).
BROKER_RETRY_AFTER = 30


class BrokerUnavailable(APIException):
    """The message broker refused or could not be reached: the work was not queued, and nothing of it
    was kept. Answered 503 with ``Retry-After`` by the API (``wait`` is what DRF turns into the header)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The task queue is unavailable, so nothing was queued. Try again in a minute."
    default_code = "broker_unavailable"
    wait = BROKER_RETRY_AFTER

    def __init__(self, broker: str, reason: str) -> None:
        super().__init__()
        self.broker = broker
        self.reason = reason

    def __str__(self) -> str:
        return f"the task queue's broker ({self.broker}) is unavailable: {self.reason}"


def broker_location() -> str:
    """The broker's scheme, host and port, for messages to operators (never its credentials)."""
    url = urlsplit(str(current_app.conf.broker_url or ""))
    host = url.hostname or "localhost"
    return f"{url.scheme}://{host}:{url.port}" if url.port else f"{url.scheme}://{host}"


def task_enqueue(name: str, *args: Any, **options: Any) -> AsyncResult:
    """Queue the task registered as ``name`` with ``args`` (``options`` as for ``apply_async``).

    Under eager Celery (the embedded default, the tests) the task runs here and now, as ``delay`` would.
    An unknown name raises ``celery.exceptions.NotRegistered``: a message nobody could run is never sent.
    A broker that cannot take the message raises ``BrokerUnavailable``.
    """
    app = current_app
    if name not in app.tasks:
        # Workers import every app's tasks module when they start; another process (web, a command)
        # imports them the first time it queues something.
        app.loader.import_default_modules()
    # Queuing also subscribes to the task's result on the result backend (Redis): its failures are the
    # same outage when it is the broker's server, and the same "nothing was queued" when it is another.
    unavailable: tuple[type[BaseException], ...] = (
        KombuOperationalError,
        ConnectionError,
        *getattr(app.backend, "connection_errors", ()),
    )
    try:
        return app.tasks[name].apply_async(args=args, **options)
    except unavailable as exc:
        if app.conf.task_always_eager:
            raise  # no broker involved: a task that ran here failed on its own connection
        raise BrokerUnavailable(broker_location(), str(exc) or type(exc).__name__) from exc
    except RuntimeError as exc:
        # Celery's Redis result consumer, failing to subscribe to the result and then to reconnect,
        # raises RuntimeError from the connection error (on the broker's server by default: results
        # live there, config/topology.py). The next call subscribes again on a new connection.
        if app.conf.task_always_eager or not isinstance(exc.__cause__, unavailable):
            raise
        raise BrokerUnavailable(
            broker_location(), str(exc.__cause__) or type(exc.__cause__).__name__
        ) from exc


def task_enqueue_on_commit(name: str, *args: Any, discard: Callable[[], object]) -> None:
    """Queue ``name`` once the current transaction commits (at once outside one).

    With a broker, a message it does not take calls ``discard`` (which deletes what the caller recorded
    for the work: a run, a job, that nothing would ever resume) and raises ``BrokerUnavailable`` out of
    the commit, to the caller. Under eager Celery the task runs at the commit and its own failure is the
    task's business (it records it on its row), so it does not fail the caller.
    """
    if current_app.conf.task_always_eager:
        transaction.on_commit(lambda: task_enqueue(name, *args), robust=True)
        return

    def enqueue() -> None:
        try:
            task_enqueue(name, *args)
        except BrokerUnavailable:
            discard()
            raise

    transaction.on_commit(enqueue)


def queue_waiting(queue: str = "") -> int:
    """How many messages wait in ``queue`` (the default queue) for a worker; 0 under eager Celery.

    Waiting, not taken: a message a worker holds (running, or held by a worker that died) is not counted.
    """
    app = current_app
    if app.conf.task_always_eager:
        return 0
    name = queue or app.conf.task_default_queue
    try:
        with app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            missing: tuple[type[BaseException], ...] = (ChannelError, *connection.channel_errors)
            try:
                return int(channel.queue_declare(queue=name, passive=True).message_count)
            except missing:
                return 0  # no such queue (Redis has none while its list is empty): nothing waits
    except (KombuOperationalError, ConnectionError) as exc:
        raise BrokerUnavailable(broker_location(), str(exc) or type(exc).__name__) from exc
