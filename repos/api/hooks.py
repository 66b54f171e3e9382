"""Inbound push webhooks from GitHub, GitLab and Gitea: verify, then queue an incremental ingestion.

The request is verified with the repository's own secret before its body is parsed:

* GitHub and Gitea sign the body with HMAC-SHA256 (``X-Hub-Signature-256: sha256=<hex>``,
  ``X-Gitea-Signature: <hex>``);
* GitLab sends the secret itself as ``X-Gitlab-Token`` (its webhooks are not signed), compared in
  constant time.

With ``?repository=<id>`` (the URL the API hands out with the secret) the secret is known before the
body: a GitLab token is checked before the body is read at all, and a signature is computed while the
body is read, in chunks, up to ``MAX_PAYLOAD_BYTES``, into a buffer that spills to disk. Nothing is
parsed until the signature matches. Without it the repository can only be found by the URLs in the
payload, so the body must be parsed before it is verified: only a small one is accepted
(``APM_PUSH_UNVERIFIED_MAX_BYTES``), and a larger one is answered 413 asking for ``?repository=``.

A verified delivery is recorded (repos.models.PushDelivery): the same delivery sent again starts nothing.
The answer comes at once: the ingestion is queued for a worker (in the embedded default, without a
broker, it runs in process before the answer).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apm.api.exceptions import ErrorSerializer
from apm.api.parsers import text_storable
from apm.api.throttling import ScopedThrottle
from monitoring.metrics import WEBHOOKS_RECEIVED
from repos.models import PushDelivery, Repository
from repos.selectors import push_candidates
from repos.services import PushDeliveryOutcome, push_delivery_receive

ZERO_SHA = "0" * 40
# GitHub caps webhook payloads at 25 MB, and a push of many commits easily passes Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default, meant for forms), which answered such a push 400.
MAX_PAYLOAD_BYTES = 25 * 1024 * 1024
# The body is read and hashed this much at a time, and kept in memory up to SPOOL_BYTES (on disk above).
CHUNK_BYTES = 64 * 1024
SPOOL_BYTES = 1024 * 1024
DELIVERY_ID_MAX_LENGTH = PushDelivery._meta.get_field("delivery_id").max_length or 100
# The header each host names its delivery with (Gitea sends GitHub's too, with the same value).
DELIVERY_HEADERS = ("X-Gitea-Delivery", "X-GitHub-Delivery", "X-Gitlab-Event-UUID")


@dataclass(frozen=True)
class PushEvent:
    provider: str
    kind: str  # "push", "ping" or anything else (ignored)
    ref: str
    after: str
    urls: frozenset[str]
    default_branch: str


@dataclass(frozen=True)
class PushBody:
    """A body as read: its bytes (in memory or spilled to disk), SHA-256, and the signature it carries."""

    file: IO[bytes]
    sha256: str
    hmac_sha256: str  # of the body with the repository's secret; "" when no secret was known yet

    def json_object(self) -> dict[str, Any] | None:
        self.file.seek(0)
        return _json_object(self.file.read())


def _url_variants(url: str) -> set[str]:
    """The spellings a registered source may have for one remote: with and without ``.git`` and ``/``."""
    base = url.strip().rstrip("/")
    if base.endswith(".git"):
        base = base[:-4]
    return {base, base + ".git", base + "/"} if base else set()


def _provider(headers: Mapping[str, str]) -> str:
    if "X-Gitlab-Event" in headers:
        return "gitlab"
    return "gitea" if "X-Gitea-Event" in headers else "github"


def push_event_parse(request: HttpRequest, payload: dict[str, Any]) -> PushEvent:
    headers = request.headers
    provider = _provider(headers)
    repository = payload.get("repository")
    if not isinstance(repository, dict):
        repository = {}
    project = payload.get("project")
    if not isinstance(project, dict):
        project = {}
    url_keys: tuple[tuple[str, dict[str, Any]], ...]
    if provider == "gitlab":
        kind = "push" if headers["X-Gitlab-Event"] == "Push Hook" else headers["X-Gitlab-Event"]
        url_keys = (
            ("git_http_url", project),
            ("web_url", project),
            ("git_ssh_url", project),
            ("git_http_url", repository),
            ("homepage", repository),
            ("url", repository),
        )
        default_branch = str(project.get("default_branch") or "")
    else:
        kind = headers.get("X-Gitea-Event") or headers.get("X-GitHub-Event") or "push"
        url_keys = (
            ("clone_url", repository),
            ("html_url", repository),
            ("ssh_url", repository),
            ("git_url", repository),
        )
        default_branch = str(repository.get("default_branch") or "")
    urls: set[str] = set()
    for key, source in url_keys:
        value = source.get(key)
        # A URL the database cannot hold (a NUL, a lone surrogate) matches no registered source, and
        # looking it up would fail the query (a 500 anyone could cause without a secret).
        if isinstance(value, str) and text_storable(value):
            urls |= _url_variants(value)
    return PushEvent(
        provider=provider,
        kind=kind,
        ref=str(payload.get("ref") or ""),
        after=str(payload.get("after") or ""),
        urls=frozenset(urls),
        default_branch=default_branch,
    )


def _content_length(request: HttpRequest) -> int:
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def push_body_read(request: HttpRequest, *, limit: int, secret: str = "") -> PushBody | None:
    """Read the raw body in chunks, up to ``limit`` bytes (None when larger), hashing it on the way:
    its SHA-256 and, with ``secret``, its HMAC-SHA256. Read past Django's form limit, never parsed."""
    if _content_length(request) > limit:
        return None
    buffer = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (handed to the caller)
    digest = hashlib.sha256()
    signature = hmac.new(secret.encode(), digestmod=hashlib.sha256) if secret else None
    size = 0
    while chunk := request.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            buffer.close()
            return None
        digest.update(chunk)
        if signature is not None:
            signature.update(chunk)
        buffer.write(chunk)
    return PushBody(
        file=buffer,
        sha256=digest.hexdigest(),
        hmac_sha256=signature.hexdigest() if signature is not None else "",
    )


def push_token_valid(headers: Mapping[str, str], secret: str) -> bool:
    """Whether GitLab's ``X-Gitlab-Token`` is ``secret``; constant-time."""
    return bool(secret) and hmac.compare_digest(headers.get("X-Gitlab-Token", "").encode(), secret.encode())


def push_signature_valid(headers: Mapping[str, str], expected: str) -> bool:
    """Whether the request's GitHub or Gitea signature is ``expected`` (the body's HMAC); constant-time."""
    if not expected:
        return False
    github = headers.get("X-Hub-Signature-256", "")
    if github.startswith("sha256="):
        return hmac.compare_digest(github[7:].strip().lower().encode(), expected.encode())
    gitea = headers.get("X-Gitea-Signature", "")
    return bool(gitea) and hmac.compare_digest(gitea.strip().lower().encode(), expected.encode())


def push_verified(headers: Mapping[str, str], secret: str, body: PushBody) -> bool:
    """Whether the request carries ``secret``'s token (GitLab) or its signature of ``body``."""
    if not secret:
        return False
    if "X-Gitlab-Token" in headers:
        return push_token_valid(headers, secret)
    if body.hmac_sha256:
        return push_signature_valid(headers, body.hmac_sha256)
    body.file.seek(0)
    signature = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    while chunk := body.file.read(CHUNK_BYTES):
        signature.update(chunk)
    return push_signature_valid(headers, signature.hexdigest())


def push_delivery_id(headers: Mapping[str, str], body: PushBody) -> str:
    """The sender's id for this delivery, or the body's SHA-256 when it gives none.

    An id that would not fit the column (or is not printable ASCII) is kept as its own SHA-256.
    """
    for name in DELIVERY_HEADERS:
        value = headers.get(name, "").strip()
        if not value:
            continue
        if len(value) <= DELIVERY_ID_MAX_LENGTH and value.isascii() and value.isprintable():
            return value
        return "sha256-of-id:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    return "sha256:" + body.sha256


def push_webhook_url(request: HttpRequest | Request, repository: Repository) -> str:
    """The URL to give the git host with the secret. It names the repository, so that APM verifies a
    body before parsing it, and accepts one up to ``MAX_PAYLOAD_BYTES``."""
    return f"{request.build_absolute_uri(reverse('api:hook-push'))}?repository={repository.pk}"


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _requested(count: int) -> str:
    # "requested", not "queued": in the embedded default the run is over before this answer is written.
    return f"Ingestion requested for {count} repositor{'y' if count == 1 else 'ies'}."


class PushWebhookView(APIView):
    """``POST /api/v1/hooks/push/``: no login; the repository's webhook secret is the credential."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedThrottle]
    throttle_scope = "hooks"

    @extend_schema(
        summary="Push webhook (GitHub, GitLab, Gitea): queue an incremental ingestion",
        auth=[],
        parameters=[
            OpenApiParameter(
                "repository",
                int,
                description="Repository id: the body is verified before it is parsed, and may be up to "
                "25 MB (without it, up to APM_PUSH_UNVERIFIED_MAX_BYTES).",
            ),
        ],
        request=inline_serializer(
            "PushPayload", {"ref": serializers.CharField(), "after": serializers.CharField()}
        ),
        responses={
            202: inline_serializer(
                "PushAccepted",
                {
                    "detail": serializers.CharField(),
                    "runs": inline_serializer(
                        "PushRun",
                        {
                            "repository": serializers.IntegerField(),
                            "run": serializers.IntegerField(allow_null=True),
                            "created": serializers.BooleanField(),
                        },
                        many=True,
                    ),
                },
            ),
            200: OpenApiResponse(
                ErrorSerializer,
                description="Ping answered, a push APM does not follow, or a delivery already received "
                "(with the runs it started).",
            ),
            400: OpenApiResponse(ErrorSerializer, description="The body is not a JSON object."),
            403: OpenApiResponse(ErrorSerializer, description="No repository matches with this secret."),
            413: OpenApiResponse(
                ErrorSerializer,
                description="The body is larger than 25 MB, or than APM_PUSH_UNVERIFIED_MAX_BYTES "
                "without ?repository=.",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        named = request.query_params.get("repository", "")
        if named:
            return self._named(request._request, named)
        return self._found(request._request)

    def _named(self, request: HttpRequest, repository_id: str) -> Response:
        """``?repository=<id>``: the secret is known, so nothing unverified is parsed or kept in memory."""
        repository = push_candidates(repository_id=repository_id, urls=()).first()
        secret = repository.webhook_secret if repository is not None else ""
        gitlab = "X-Gitlab-Token" in request.headers
        if repository is None or not secret or (gitlab and not push_token_valid(request.headers, secret)):
            return self._forbidden()
        body = push_body_read(request, limit=MAX_PAYLOAD_BYTES, secret="" if gitlab else secret)
        if body is None:
            detail = f"The body is larger than {MAX_PAYLOAD_BYTES // (1024 * 1024)} MB."
            return self._answer("invalid", detail, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        with body.file:
            if not push_verified(request.headers, secret, body):
                return self._forbidden()
            payload = body.json_object()
        if payload is None:
            return self._not_json()
        return self._receive(request, push_event_parse(request, payload), [repository], body)

    def _found(self, request: HttpRequest) -> Response:
        """No ``?repository=``: the payload's URLs name the repository, so a small body is parsed first."""
        limit = min(settings.APM_PUSH_UNVERIFIED_MAX_BYTES, MAX_PAYLOAD_BYTES)
        body = push_body_read(request, limit=limit)
        if body is None:
            detail = (
                f"The body is larger than {limit} bytes, the most APM parses before it knows the repository. "
                "Add ?repository=<id> to the webhook's URL (the URL given with the webhook secret) to send "
                f"up to {MAX_PAYLOAD_BYTES // (1024 * 1024)} MB."
            )
            return self._answer("invalid", detail, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        with body.file:
            payload = body.json_object()
            if payload is None:
                return self._not_json()
            event = push_event_parse(request, payload)
            candidates = push_candidates(repository_id="", urls=event.urls)
            verified = [r for r in candidates if push_verified(request.headers, r.webhook_secret, body)]
        if not verified:
            return self._forbidden()
        return self._receive(request, event, verified, body)

    def _receive(
        self, request: HttpRequest, event: PushEvent, verified: list[Repository], body: PushBody
    ) -> Response:
        delivery_id = push_delivery_id(request.headers, body)
        outcomes: list[tuple[Repository, PushDeliveryOutcome]] = []
        for repository in verified:
            branch = repository.default_branch or event.default_branch
            followed = (
                event.kind == "push"
                and repository.is_active
                and event.after != ZERO_SHA
                and (not branch or event.ref == f"refs/heads/{branch}")
            )
            outcome = push_delivery_receive(
                repository=repository, delivery_id=delivery_id, body_sha256=body.sha256, ingest=followed
            )
            outcomes.append((repository, outcome))
        if all(outcome.replayed for _, outcome in outcomes):
            runs = [
                {"repository": repository.pk, "run": outcome.delivery.run_id, "created": False}
                for repository, outcome in outcomes
            ]
            started = ", ".join(str(run["run"]) for run in runs if run["run"] is not None) or "none"
            first = min(outcome.delivery.received_at for _, outcome in outcomes)
            WEBHOOKS_RECEIVED.labels(provider=event.provider, outcome="replayed").inc()
            return Response(
                {
                    "detail": f"Already received at {first.isoformat()}: nothing is started again "
                    f"(ingestion runs it started: {started}).",
                    "runs": runs,
                },
                status=status.HTTP_200_OK,
            )
        if event.kind == "ping":
            return self._answer("ping", "Pong: the webhook is set up.", status.HTTP_200_OK)
        if event.kind != "push":
            return self._answer(
                "ignored", f"Ignored: {event.kind!r} events are not ingested.", status.HTTP_200_OK
            )
        runs = [
            {"repository": repository.pk, "run": outcome.delivery.run_id, "created": outcome.created}
            for repository, outcome in outcomes
            if not outcome.replayed and outcome.delivery.run_id is not None
        ]
        if not runs:
            return self._answer(
                "ignored",
                f"Ignored: {event.ref or 'this push'} is not a branch APM follows (another branch, a deleted "
                "branch, or a repository switched off with is_active).",
                status.HTTP_200_OK,
            )
        WEBHOOKS_RECEIVED.labels(provider=event.provider, outcome="queued").inc()
        return Response(
            {"detail": _requested(len(runs)), "runs": runs},
            status=status.HTTP_202_ACCEPTED,
        )

    def _forbidden(self) -> Response:
        return self._answer(
            "forbidden",
            "No registered repository matches this payload with this secret or signature.",
            status.HTTP_403_FORBIDDEN,
        )

    def _not_json(self) -> Response:
        return self._answer("invalid", "The body must be a JSON object.", status.HTTP_400_BAD_REQUEST)

    def _answer(self, outcome: str, detail: str, code: int) -> Response:
        WEBHOOKS_RECEIVED.labels(provider=_provider(self.request.headers), outcome=outcome).inc()
        return Response({"detail": detail}, status=code)
