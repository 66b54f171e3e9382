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


def user_change_matters(update_fields: frozenset[str] | None) -> bool:
    """Whether a save of a user may change what they may do: every save but a sign-in's, which writes
    ``last_login`` alone (``django.contrib.auth.models.update_last_login``)."""
    return update_fields is None or not set(update_fields) <= {"last_login"}
