"""Who may do what through the API.

Visibility is decided by the querysets (``ProjectScopedMixin``): a project a user is not a member of
does not exist for them, so every route answers 404. Writing is decided here and in
``ProjectScopedMixin.project_role_require``: viewers and read-only tokens may only read.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from apm.models import ApiToken


class TokenScopePermission(permissions.BasePermission):
    """A read-only token may only send safe requests (GET, HEAD, OPTIONS)."""

    message = "This API token is read-only; create a token with the write scope to make changes."

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if isinstance(token, ApiToken) and token.scope == ApiToken.Scope.READ:
            return request.method in permissions.SAFE_METHODS
        return True
