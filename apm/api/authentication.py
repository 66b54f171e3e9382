"""Token authentication for integrations: ``Authorization: Token apm_...`` (or ``Bearer``)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.authentication import BasicScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apm.models import ApiToken
from apm.services import api_token_authenticate
from monitoring.metrics import API_TOKENS_AUTHENTICATED


class TokenAuthentication(authentication.BaseAuthentication):
    """Authenticate a request by an APM API token; ``request.auth`` is the ``ApiToken``."""

    keywords = ("token", "bearer")

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower().decode(errors="replace") not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(_("Malformed Authorization header: give one token."))
        try:
            raw = header[1].decode()
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed(_("The token contains invalid characters.")) from exc
        token = api_token_authenticate(raw)
        if token is None:
            # A burst of these is someone trying tokens, or an integration whose token expired.
            API_TOKENS_AUTHENTICATED.labels(outcome="refused").inc()
            raise exceptions.AuthenticationFailed(_("Invalid, expired or revoked token."))
        API_TOKENS_AUTHENTICATED.labels(outcome="accepted").inc()
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Makes unauthenticated requests answer 401 with a WWW-Authenticate challenge instead of 403.
        return 'Token realm="api"'


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apm.api.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "An APM API token, prefixed with `Token ` (e.g. `Token apm_...`).",
        }


class NulSafeBasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic for creating tokens, refusing a username with a NUL before anything looks it up (the
    sign-in lockout's query of failed attempts failed on it: a 500 without credentials)."""

    def authenticate_credentials(self, userid: str, password: str, request: Any = None) -> tuple[Any, None]:
        if "\x00" in userid:
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        return super().authenticate_credentials(userid, password, request)


class NulSafeBasicScheme(BasicScheme):
    target_class = "apm.api.authentication.NulSafeBasicAuthentication"
