"""Writes to APM's own records: API tokens."""

from __future__ import annotations

import datetime
import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.utils import timezone

from apm.cache import Stamp, cache_shared, generation_bump_on_commit, stamped_get, stamped_set
from apm.models import ApiToken
from apm.users import user_change_matters

# Every token starts with this, so secret scanners (and people) recognise an APM token when it leaks.
TOKEN_PREFIX = "apm_"  # noqa: S105 (a public marker, not a secret)
# A token's last use is recorded at most this often, so authenticating is not a write per request.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=5)
# Tokens authenticated lately are remembered in the shared cache, with their user, for this long (the
# default of APM_API_TOKEN_CACHE_SECONDS): a request with a known token costs a cache lookup, not a
# query. Any change to a token or to a user (revoked, deactivated, deleted) drops them all at once, when
# it commits (``api_tokens_forget``), so the time only bounds what an invalidation lost to a cache
# outage could leave behind (apm.cache's docstring).
TOKEN_CACHE_SECONDS = 60.0
_TOKENS_NAMESPACE = "apitokens"


def api_token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(
    *,
    user: User,
    name: str,
    scope: str = ApiToken.Scope.WRITE,
    expires_at: datetime.datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for ``user``; return it with its secret, which is shown this once and never stored."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": ["The expiry must be in the future."]})
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user,
        name=name,
        scope=scope,
        expires_at=expires_at,
        prefix=raw[: len(TOKEN_PREFIX) + 6],
        digest=api_token_digest(raw),
    )
    token.full_clean()
    token.save(force_insert=True)
    return token, raw


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke ``token`` for good; revoking it again changes nothing."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_authenticate(raw: str) -> ApiToken | None:
    """The active token whose secret is ``raw``, with its user, or None.

    From the shared cache when it was authenticated lately, else one indexed query; the last use is
    written back only when the stored one is older than ``LAST_USED_RESOLUTION``.
    """
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 100:
        return None
    digest = api_token_digest(raw)
    remembered = cache_shared() and getattr(settings, "APM_API_TOKEN_CACHE_SECONDS", TOKEN_CACHE_SECONDS) > 0
    key = f"{_TOKENS_NAMESPACE}:{digest}"
    token, stamp = stamped_get(key, namespace=_TOKENS_NAMESPACE) if remembered else (None, None)
    if not isinstance(token, ApiToken):
        # Without the password's hash: nothing here needs it, and the token may go to the cache.
        token = ApiToken.objects.select_related("user").defer("user__password").filter(digest=digest).first()
        if token is None:
            return None
        if remembered:
            _token_remember(key, token, stamp)
    if not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
        if remembered:
            _token_remember(key, token, stamp)
    return token


def _token_remember(key: str, token: ApiToken, stamp: Stamp | None) -> None:
    seconds = float(getattr(settings, "APM_API_TOKEN_CACHE_SECONDS", TOKEN_CACHE_SECONDS))
    stamped_set(key, token, stamp=stamp, timeout=seconds)


def api_tokens_forget(**_: object) -> None:
    """Drop every remembered token once the current transaction commits.

    Connected to every save and delete of a token or a user (apm.apps): a revocation, an expiry moved, a
    user deactivated or deleted.
    """
    generation_bump_on_commit(_TOKENS_NAMESPACE)


def api_tokens_forget_on_user_save(update_fields: frozenset[str] | None = None, **_: object) -> None:
    if user_change_matters(update_fields):
        api_tokens_forget()
