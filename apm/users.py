"""The signed-in user of a request, typed as the user model."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest


def request_user(request: HttpRequest) -> User:
    """``request.user`` on a route that only a signed-in user reaches (the API's IsAuthenticated, the admin).

    Only a type: authentication has already turned anonymous requests away, so nothing is checked here.
    """
    return cast("User", request.user)
