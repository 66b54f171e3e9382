"""Inbound push webhooks from GitHub, GitLab and Gitea: verify, then queue an incremental ingestion.

The repository is found by the URLs in the payload (or by ``?repository=<id>`` for repositories
registered by local path) and the request is verified with that repository's own secret:

* GitHub and Gitea sign the body with HMAC-SHA256 (``X-Hub-Signature-256: sha256=<hex>``,
  ``X-Gitea-Signature: <hex>``);
* GitLab sends the secret itself as ``X-Gitlab-Token`` (its webhooks are not signed), compared in
  constant time.

The answer comes at once: the ingestion is queued for a worker (in the embedded default, without a
broker, it runs in process before the answer).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apm.api.exceptions import ErrorSerializer
from apm.api.throttling import ScopedThrottle
from monitoring.metrics import WEBHOOKS_RECEIVED
from repos.models import IngestionRun
from repos.selectors import push_candidates
from repos.services import ingestion_request

ZERO_SHA = "0" * 40
# GitHub caps webhook payloads at 25 MB, and a push of many commits easily passes Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default, meant for forms), which answered such a push 400.
MAX_PAYLOAD_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class PushEvent:
    provider: str
    kind: str  # "push", "ping" or anything else (ignored)
    ref: str
    after: str
    urls: frozenset[str]
    default_branch: str


def _url_variants(url: str) -> set[str]:
    """The spellings a registered source may have for one remote: with and without ``.git`` and ``/``."""
    base = url.strip().rstrip("/")
    if base.endswith(".git"):
        base = base[:-4]
    return {base, base + ".git", base + "/"} if base else set()


def _provider(headers: Any) -> str:
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
        if isinstance(value, str):
            urls |= _url_variants(value)
    return PushEvent(
        provider=provider,
        kind=kind,
        ref=str(payload.get("ref") or ""),
        after=str(payload.get("after") or ""),
        urls=frozenset(urls),
        default_branch=default_branch,
    )


def push_body_read(request: HttpRequest) -> bytes | None:
    """The raw body, up to ``MAX_PAYLOAD_BYTES`` (None when larger), read past Django's form limit."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_PAYLOAD_BYTES:
        return None
    body = request.read(MAX_PAYLOAD_BYTES + 1)
    return None if len(body) > MAX_PAYLOAD_BYTES else body


def push_signature_valid(request: HttpRequest, secret: str, body: bytes) -> bool:
    """Whether ``body`` was signed (or the request carries the token) with ``secret``; constant-time."""
    if not secret:
        return False
    headers = request.headers
    if "X-Gitlab-Token" in headers:
        return hmac.compare_digest(headers["X-Gitlab-Token"].encode(), secret.encode())
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    github = headers.get("X-Hub-Signature-256", "")
    if github.startswith("sha256="):
        return hmac.compare_digest(github[7:].strip().lower().encode(), expected.encode())
    gitea = headers.get("X-Gitea-Signature", "")
    return bool(gitea) and hmac.compare_digest(gitea.strip().lower().encode(), expected.encode())


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


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
                "repository", int, description="Repository id, when the payload's URLs do not identify it."
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
                            "run": serializers.IntegerField(),
                            "created": serializers.BooleanField(),
                        },
                        many=True,
                    ),
                },
            ),
            200: OpenApiResponse(
                ErrorSerializer, description="Ping answered, or a push APM does not follow."
            ),
            400: OpenApiResponse(ErrorSerializer, description="The body is not a JSON object."),
            403: OpenApiResponse(ErrorSerializer, description="No repository matches with this secret."),
            413: OpenApiResponse(ErrorSerializer, description="The body is larger than 25 MB."),
        },
    )
    def post(self, request: Request) -> Response:  # noqa: PLR0911 (one answer per webhook outcome)
        body = push_body_read(request._request)
        if body is None:
            detail = f"The body is larger than {MAX_PAYLOAD_BYTES // (1024 * 1024)} MB."
            return self._answer("invalid", detail, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        payload = _json_object(body)
        if payload is None:
            return self._answer("invalid", "The body must be a JSON object.", status.HTTP_400_BAD_REQUEST)
        event = push_event_parse(request._request, payload)
        candidates = push_candidates(
            repository_id=request.query_params.get("repository", ""), urls=event.urls
        )
        verified = [r for r in candidates if push_signature_valid(request._request, r.webhook_secret, body)]
        if not verified:
            return self._answer(
                "forbidden",
                "No registered repository matches this payload with this secret or signature.",
                status.HTTP_403_FORBIDDEN,
            )
        if event.kind == "ping":
            return self._answer("ping", "Pong: the webhook is set up.", status.HTTP_200_OK)
        if event.kind != "push":
            return self._answer(
                "ignored", f"Ignored: {event.kind!r} events are not ingested.", status.HTTP_200_OK
            )
        runs = []
        for repository in verified:
            branch = repository.default_branch or event.default_branch
            followed = repository.is_active and event.after != ZERO_SHA
            if not followed or (branch and event.ref != f"refs/heads/{branch}"):
                continue
            outcome = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.WEBHOOK)
            runs.append({"repository": repository.pk, "run": outcome.run.pk, "created": outcome.created})
        if not runs:
            return self._answer(
                "ignored",
                f"Ignored: {event.ref or 'this push'} is not a branch APM follows (another branch, a deleted "
                "branch, or a repository switched off with is_active).",
                status.HTTP_200_OK,
            )
        WEBHOOKS_RECEIVED.labels(provider=event.provider, outcome="queued").inc()
        return Response(
            {"detail": f"Ingestion queued for {len(runs)} repository(ies).", "runs": runs},
            status=status.HTTP_202_ACCEPTED,
        )

    def _answer(self, outcome: str, detail: str, code: int) -> Response:
        WEBHOOKS_RECEIVED.labels(provider=_provider(self.request.headers), outcome=outcome).inc()
        return Response({"detail": detail}, status=code)
