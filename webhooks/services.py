"""Outgoing webhooks: per-project subscriptions, events turned into deliveries, and their signed POSTs.

Every event goes through ``webhook_event_emit`` inside the transaction that caused it: the deliveries are
written with the change and the Celery tasks are enqueued only once it commits, so a rolled-back change
sends nothing. ``webhook_deliver`` makes one attempt and records it on the delivery row; the Celery task
``projects.webhook_deliver`` retries with backoff. Targets are checked against SSRF when a subscription
is saved and again before every attempt, and the connection goes to the address that was checked, so a
DNS answer changed in between cannot point APM at an internal host. See docs/webhooks.md.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import json
import random
import secrets
import socket
import ssl
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from apm.jobs import task_enqueue
from apm.network import Network, address_first_internal, host_addresses, host_refusal, networks_parse
from monitoring.metrics import WEBHOOK_DELIVERIES
from projects.models import Project
from webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription

logger = structlog.get_logger(__name__)
# The Celery task that makes one delivery attempt (webhooks.tasks); the name predates the app.
DELIVER_TASK = "projects.webhook_deliver"

PING_EVENT = "ping"
USER_AGENT = "APM-Webhooks/1"
# How much of a response body is kept on the delivery row (and read at all).
RESPONSE_EXCERPT_BYTES = 1024
URL_MAX_LENGTH = WebhookSubscription._meta.get_field("url").max_length or 2000
# Fields a subscription update may change; the secret changes through its own rotation.
WEBHOOK_UPDATABLE_FIELDS = frozenset({"url", "events", "is_active", "description"})

Status = WebhookDelivery.Status


# --- Target checks (SSRF) -----------------------------------------------------------------------------


class WebhookTargetRefused(Exception):
    """A target URL APM will not send to. ``transient``: the name did not resolve (may resolve later)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


@dataclass(frozen=True)
class WebhookTarget:
    """A checked URL: where to connect (the checked addresses, in resolver order) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def _allowed_networks() -> list[Network]:
    return networks_parse(settings.APM_WEBHOOK_ALLOWED_NETWORKS, setting="APM_WEBHOOK_ALLOWED_NETWORKS")


# Characters kept as they are when a URL's path and query are percent-encoded (RFC 3986 reserved and
# unreserved characters, and % so that what is encoded already stays so).
_URL_SAFE = "/%:@!$&'()*+,;=-._~"


def _target_resolve(url: str) -> WebhookTarget:
    """Check ``url`` and resolve its host; raise ``WebhookTargetRefused`` saying why it is refused."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError as exc:
        raise WebhookTargetRefused("Enter a valid http:// or https:// URL.") from exc
    if len(url) > URL_MAX_LENGTH:
        raise WebhookTargetRefused(f"A webhook URL has at most {URL_MAX_LENGTH} characters.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and settings.APM_WEBHOOK_ALLOW_HTTP):
        raise WebhookTargetRefused("Only https:// URLs are allowed.")
    if "@" in parts.netloc:
        raise WebhookTargetRefused("A webhook URL may not contain a user name or password.")
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookTargetRefused("The URL's port is not a valid port number.") from exc
    try:
        addresses = host_addresses(host, port)
    except (OSError, UnicodeError) as exc:
        raise WebhookTargetRefused(f"The host {host} could not be resolved.", transient=True) from exc
    refused = address_first_internal(addresses, allowed=_allowed_networks())
    if refused is not None:
        address, reason = refused
        # The answer (an API 400, a delivery's error) names the kind of address only; operators find
        # which address in the log.
        logger.warning(
            "webhook_target_refused",
            host=host,
            port=port,
            address=address,
            reason=reason,
            addresses=list(addresses),
        )
        raise WebhookTargetRefused(
            f"{host_refusal(host, address, reason)}; webhooks only go to public addresses (operators may "
            "allow networks with APM_WEBHOOK_ALLOWED_NETWORKS)."
        )
    # Percent-encoded: http.client sends the request line as ASCII, and a URL may hold any character.
    path = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        path = f"{path}?{quote(parts.query, safe=_URL_SAFE + '?')}"
    return WebhookTarget(scheme=scheme, host=host, port=port, path=path, addresses=tuple(addresses))


def webhook_url_validate(*, url: str) -> None:
    """Raise a ``ValidationError`` on ``url`` unless APM may send webhooks to it (see _target_resolve)."""
    try:
        _target_resolve(url)
    except WebhookTargetRefused as exc:
        raise ValidationError({"url": [exc.message]}) from exc


def _events_validate(events: Any) -> list[str]:
    if not isinstance(events, list | tuple) or not events or not all(isinstance(e, str) for e in events):
        raise ValidationError({"events": ["Give a non-empty list of event names."]})
    unknown = sorted(set(events) - set(WebhookEvent.values))
    if unknown:
        raise ValidationError(
            {
                "events": [
                    f"Unknown event(s): {', '.join(unknown)}; choose from {', '.join(WebhookEvent.values)}."
                ]
            }
        )
    return [event for event in WebhookEvent.values if event in events]  # canonical order, no repeats


# --- Subscriptions ------------------------------------------------------------------------------------


def _secret_new() -> str:
    return secrets.token_urlsafe(32)


@transaction.atomic
def webhook_subscription_create(
    *,
    project: Project,
    url: str,
    events: list[str],
    description: str = "",
    is_active: bool = True,
    created_by: User | None = None,
) -> WebhookSubscription:
    """Subscribe ``url`` to ``events`` of ``project``. The returned row carries the new secret."""
    subscription = WebhookSubscription(
        project=project,
        url=url,
        events=_events_validate(events),
        description=description,
        is_active=is_active,
        secret=_secret_new(),
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
    )
    subscription.full_clean(exclude=["url", "events"])
    webhook_url_validate(url=url)
    subscription.save(force_insert=True)
    return subscription


@transaction.atomic
def webhook_subscription_update(*, subscription: WebhookSubscription, **fields: Any) -> WebhookSubscription:
    """Change a subscription's URL, events, description or whether it is active."""
    unknown = set(fields) - WEBHOOK_UPDATABLE_FIELDS
    if unknown:
        raise ValidationError({name: ["This field cannot be changed."] for name in sorted(unknown)})
    if "events" in fields:
        fields["events"] = _events_validate(fields["events"])
    for name, value in fields.items():
        setattr(subscription, name, value)
    subscription.full_clean(exclude=["url", "events"])
    if "url" in fields:
        webhook_url_validate(url=subscription.url)
    subscription.save(update_fields=[*fields, "updated_at"])
    return subscription


def webhook_subscription_delete(*, subscription: WebhookSubscription) -> None:
    """Delete a subscription and its delivery log; deliveries already queued then find nothing to send."""
    subscription.delete()


def webhook_subscription_secret_rotate(*, subscription: WebhookSubscription) -> str:
    """Give the subscription a new secret and return it (the only time it is shown)."""
    subscription.secret = _secret_new()
    subscription.save(update_fields=["secret", "updated_at"])
    return subscription.secret


# --- Events -------------------------------------------------------------------------------------------


def _payload(*, delivery_id: uuid.UUID, event: str, project: Project, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(delivery_id),
        "event": event,
        "created_at": timezone.now().isoformat(),
        "project": {"id": project.pk, "key": project.key},
        "data": data,
    }


def _deliveries_enqueue(delivery_ids: Iterable[uuid.UUID]) -> None:
    ids = [str(delivery_id) for delivery_id in delivery_ids]
    # After the commit: a rolled-back change sends nothing, and the worker finds the rows. Robust: a
    # broker outage must not turn the committed change into an error; webhook_deliveries_resume sends
    # the deliveries later.
    transaction.on_commit(
        lambda: [task_enqueue(DELIVER_TASK, delivery_id) for delivery_id in ids], robust=True
    )


def webhook_event_emit(*, project_id: int, event: str, data: dict[str, Any]) -> None:
    """Queue ``event`` for every active subscription of the project that listens to it.

    Costs one query when nobody listens (the subscriptions, with their project joined); otherwise one more
    to write the deliveries. Call it inside the transaction of the change: the deliveries are enqueued
    when that commits. ``data`` must be JSON-serialisable.
    """
    if event not in WebhookEvent.values:
        raise ValueError(f"Unknown webhook event {event!r}")
    # idx_webhook_subs_project; the event is matched here rather than in SQL, because JSON containment
    # is not portable (SQLite has none) and a project has a handful of subscriptions.
    subscriptions = [
        subscription
        # A project being deleted (projects.deletion) sends nothing more.
        for subscription in WebhookSubscription.objects.filter(
            project_id=project_id, is_active=True, project__deleting_since__isnull=True
        )
        .select_related("project")
        .only("id", "events", "project__id", "project__key")
        if event in subscription.events
    ]
    if not subscriptions:
        return
    deliveries = []
    for subscription in subscriptions:
        delivery_id = uuid.uuid4()
        deliveries.append(
            WebhookDelivery(
                subscription=subscription,
                event=event,
                delivery_id=delivery_id,
                payload=_payload(
                    delivery_id=delivery_id, event=event, project=subscription.project, data=data
                ),
            )
        )
    # Enqueued by uuid, not by primary key: bulk_create does not return keys on every database.
    WebhookDelivery.objects.bulk_create(deliveries)
    _deliveries_enqueue(delivery.delivery_id for delivery in deliveries)


def webhook_delivery_redeliver(*, delivery: WebhookDelivery) -> bool:
    """Send a failed delivery again, with a fresh set of attempts; False if it had not failed."""
    with transaction.atomic():
        reset = WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.FAILED).update(
            status=Status.PENDING, attempts=0, next_attempt_at=None
        )
        if reset:
            _deliveries_enqueue([delivery.delivery_id])
    return bool(reset)


# --- Delivery -----------------------------------------------------------------------------------------


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with the subscription's secret over ``"<timestamp>.<body>"``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class _PinnedConnectionMixin:
    """Connect to addresses checked beforehand instead of resolving the host name again.

    The request still names the host (Host header, and for https the SNI and the certificate check), so
    virtual hosts and TLS work as usual; only the address is fixed.
    """

    addresses: tuple[str, ...]
    connect_timeout: float
    read_timeout: float
    port: int

    def _socket_open(self) -> socket.socket:
        error: OSError | None = None
        for address in self.addresses:
            try:
                sock = socket.create_connection((address, self.port), timeout=self.connect_timeout)
            except OSError as exc:
                error = exc
                continue
            sock.settimeout(self.read_timeout)
            return sock
        raise error or OSError("no address to connect to")


class _PinnedHTTPConnection(_PinnedConnectionMixin, http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = self._socket_open()


class _PinnedHTTPSConnection(_PinnedConnectionMixin, http.client.HTTPSConnection):
    _context: ssl.SSLContext  # set by HTTPSConnection.__init__ (not in its stubs)

    def connect(self) -> None:
        self.sock = self._context.wrap_socket(self._socket_open(), server_hostname=self.host)


@dataclass
class _Response:
    status: int
    excerpt: str


def _post(target: WebhookTarget, *, body: bytes, headers: dict[str, str]) -> _Response:
    """POST ``body`` to the checked ``target``; redirects are not followed, the body read is capped."""
    connect_timeout, read_timeout = settings.APM_WEBHOOK_TIMEOUT
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = _PinnedHTTPSConnection(target.host, target.port, context=ssl.create_default_context())
    else:
        connection = _PinnedHTTPConnection(target.host, target.port)
    connection.addresses = target.addresses
    connection.connect_timeout = connect_timeout
    connection.read_timeout = read_timeout
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        # NUL cannot be stored in a PostgreSQL text column; a binary answer is shown with U+FFFD instead.
        excerpt = (
            response.read(RESPONSE_EXCERPT_BYTES).decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        )
        return _Response(status=response.status, excerpt=excerpt)
    finally:
        connection.close()


@dataclass
class DeliveryOutcome:
    """What one call of ``webhook_deliver`` did. ``retry_in``: seconds until the next attempt, if any."""

    status: str
    sent: bool = False
    retry_in: float | None = None
    delivery: WebhookDelivery | None = field(default=None, repr=False)


def _backoff(attempts: int) -> float:
    # Exponential (base, 2 x base, 4 x base, ...) capped, with "equal jitter": between half and all of
    # it, so receivers coming back after an outage are not hit by every retry at the same instant.
    delay: float = min(settings.APM_WEBHOOK_BACKOFF_MAX, settings.APM_WEBHOOK_BACKOFF * 2 ** (attempts - 1))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311  (jitter, not cryptography)


def _claim(delivery_id: str, attempt: int) -> WebhookDelivery | None:
    """Lock the delivery and count the attempt about to be made; None when there is nothing to send.

    ``attempt`` is the number of attempts the caller knows were made before (the Celery task's retry
    count). More were made already when this is a duplicate of a message another worker has handled
    or is handling: sending again would deliver twice.
    """
    with transaction.atomic():
        # The delivery row only: joining the subscription here would lock its row (and on PostgreSQL
        # FOR UPDATE locks every joined row), which the API's updates of the subscription would wait on.
        delivery = WebhookDelivery.objects.select_for_update().filter(delivery_id=delivery_id).first()
        if delivery is None or delivery.status != Status.PENDING:
            return None
        if delivery.attempts > attempt and (
            delivery.next_attempt_at is None or delivery.next_attempt_at > timezone.now()
        ):
            # Another message made or is making this attempt. Once its time is up (it would have timed
            # out or been recorded by then), the attempt died with its worker: this message takes over.
            return None
        delivery.attempts += 1
        connect_timeout, read_timeout = settings.APM_WEBHOOK_TIMEOUT
        # While the attempt runs, the next one is not due before it can have timed out.
        # Several addresses each get a connect timeout and the answer takes a few reads: three times
        # the timeouts, plus time for DNS, bounds an attempt that is still alive.
        window = 3 * (connect_timeout + read_timeout) + 30
        delivery.next_attempt_at = timezone.now() + datetime.timedelta(seconds=window)
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        return delivery


def webhook_deliver(*, delivery_id: str, attempt: int = 0, allow_retry: bool = True) -> DeliveryOutcome:
    """Make one attempt to send delivery ``delivery_id`` and record it on the row.

    2xx: succeeded. A network error, a 5xx or a 429: retried (``retry_in`` says when) until
    ``APM_WEBHOOK_MAX_ATTEMPTS`` attempts were made, or failed at once without ``allow_retry``. Anything
    else (a redirect, another 4xx, a target that is now refused): failed at once. A delivery that has
    already succeeded or failed is not sent again.
    """
    delivery = _claim(delivery_id, attempt)
    if delivery is None:
        current = WebhookDelivery.objects.filter(delivery_id=delivery_id).values_list("status", flat=True)
        return DeliveryOutcome(status=current.first() or "missing")
    subscription = delivery.subscription
    status_code: int | None = None
    excerpt = ""
    error = ""
    retryable = False
    started = time.monotonic()
    if not subscription.is_active:
        error = "The subscription is inactive."
    elif Project.all_objects.filter(pk=subscription.project_id, deleting_since__isnull=False).exists():
        error = "The project is being deleted."
    else:
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-APM-Event": delivery.event,
            "X-APM-Delivery": str(delivery.delivery_id),
            "X-APM-Timestamp": str(timestamp),
            "X-APM-Signature-256": webhook_signature(
                secret=subscription.secret, timestamp=timestamp, body=body
            ),
        }
        try:
            # Checked again at every attempt: the URL's DNS may have changed since it was saved.
            target = _target_resolve(subscription.url)
            response = _post(target, body=body, headers=headers)
        except WebhookTargetRefused as exc:
            error, retryable = exc.message, exc.transient
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, TLS, bad reply
            error, retryable = f"{type(exc).__name__}: {exc}".replace("\x00", "\ufffd"), True
        except ValueError as exc:  # what http.client refuses to send (a header it finds invalid, say)
            error = f"The request could not be sent: {exc}"
        else:
            status_code, excerpt = response.status, response.excerpt
            retryable = status_code == 429 or status_code >= 500
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}" + (
                    " (redirects are not followed)" if 300 <= status_code < 400 else ""
                )
    duration_ms = round((time.monotonic() - started) * 1000)
    succeeded = status_code is not None and 200 <= status_code < 300
    now = timezone.now()
    retry_in: float | None = None
    if succeeded:
        outcome = Status.SUCCEEDED
    elif retryable and allow_retry and delivery.attempts < settings.APM_WEBHOOK_MAX_ATTEMPTS:
        outcome = Status.PENDING
        retry_in = _backoff(delivery.attempts)
    else:
        outcome = Status.FAILED
    # Only while the row still counts this attempt: had another message taken over (this attempt outlived
    # its window), its newer result stands.
    WebhookDelivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts).update(
        status=outcome,
        last_status_code=status_code,
        last_error=error[:500],
        response_excerpt=excerpt,
        duration_ms=duration_ms,
        next_attempt_at=now + datetime.timedelta(seconds=retry_in) if retry_in is not None else None,
        delivered_at=now if succeeded else None,
    )
    WEBHOOK_DELIVERIES.labels(
        event=delivery.event, outcome="retried" if outcome == Status.PENDING else outcome
    ).inc()
    delivery.refresh_from_db()
    return DeliveryOutcome(status=outcome, sent=True, retry_in=retry_in, delivery=delivery)


def webhook_ping(*, subscription: WebhookSubscription) -> WebhookDelivery:
    """Send a ``ping`` delivery to the subscription now, once, and return it with the attempt's result."""
    delivery_id = uuid.uuid4()
    delivery = WebhookDelivery.objects.create(
        subscription=subscription,
        event=PING_EVENT,
        delivery_id=delivery_id,
        payload=_payload(
            delivery_id=delivery_id,
            event=PING_EVENT,
            project=subscription.project,
            data={"subscription": subscription.pk, "events": subscription.events},
        ),
    )
    # One attempt in the request, so the caller sees the answer; no retries: a ping is a test.
    outcome = webhook_deliver(delivery_id=str(delivery.delivery_id), allow_retry=False)
    return outcome.delivery or delivery


# --- Reads --------------------------------------------------------------------------------------------


def webhook_subscription_list(*, project: Project) -> QuerySet[WebhookSubscription]:
    """A project's subscriptions, oldest first (idx_webhook_subs_project)."""
    return WebhookSubscription.objects.filter(project=project).select_related("created_by").order_by("id")


def webhook_delivery_list(*, subscription: WebhookSubscription) -> QuerySet[WebhookDelivery]:
    """A subscription's deliveries, newest first (idx_webhook_deliv_sub_time); payloads left out."""
    return WebhookDelivery.objects.filter(subscription=subscription).defer("payload")


# A delivery never enqueued (the broker was down) or whose attempt died with its worker is picked up
# once it is this late.
RESUME_AFTER = datetime.timedelta(minutes=5)


def webhook_deliveries_resume() -> int:
    """Enqueue the pending deliveries that nothing will send: never enqueued, or their attempt died.

    Run by the schedule. A delivery whose next attempt is due later is left to its own retry; one sent
    twice by a race with that retry is refused by ``_claim``.
    """
    late = timezone.now() - RESUME_AFTER
    stalled = (
        WebhookDelivery.objects.filter(status=Status.PENDING)
        .filter(Q(next_attempt_at__lt=late) | Q(next_attempt_at__isnull=True, created_at__lt=late))
        .filter(subscription__project__deleting_since__isnull=True)
    )
    count = 0
    for delivery_id in stalled.values_list("delivery_id", flat=True).iterator(chunk_size=500):
        task_enqueue(DELIVER_TASK, str(delivery_id))
        count += 1
    return count
