"""Sign-in lockout (django-axes, docs/security.md): whose address a sign-in comes from, and the page a
locked sign-in gets.

Both are named in the settings (``AXES_CLIENT_IP_CALLABLE``, ``AXES_LOCKOUT_CALLABLE``); axes calls them
for the admin's sign-in, the pages' own and HTTP Basic on the token routes.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from rest_framework.throttling import BaseThrottle


def client_address(request: HttpRequest) -> str | None:
    """The client's address by the API's rule: the connection's own, or with ``APM_NUM_PROXIES`` set, the
    one the nearest trusted proxy wrote in X-Forwarded-For. One rule for rate limits and lockouts, so a
    forged header changes neither."""
    # DRF's rule reads request.META only, which a Django request has too (its stubs say a DRF Request).
    return BaseThrottle().get_ident(request)  # type: ignore[arg-type]


def client_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """The account a sign-in names, case-folded: "Alice" and "ALICE" count against one account. MariaDB
    compares usernames without case, so each spelling would otherwise get its own ten guesses there."""
    field = str(getattr(settings, "AXES_USERNAME_FORM_FIELD", "username"))
    data = credentials if credentials else getattr(request, "data", request.POST)
    username = data.get(field)
    return username.casefold() if isinstance(username, str) else username


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict[str, Any] | None
) -> HttpResponse:
    """429 with the time the lockout ends (also in ``Retry-After``), in place of the sign-in form.

    Counted failures are the account's from this address (``AXES_LOCKOUT_PARAMETERS``); the cool-off
    runs from the last of them, since failures during the lockout are not counted.
    """
    now = timezone.now()
    cool_off = get_cool_off(request) or dt.timedelta(0)
    last_failure = AccessAttempt.objects.filter(
        username=get_client_username(request, credentials),
        ip_address=getattr(request, "axes_ip_address", None),
    ).aggregate(last=Max("attempt_time"))["last"]
    retry_at = (last_failure or now) + cool_off
    seconds = max(1, math.ceil((retry_at - now).total_seconds()))
    response = render(
        request,
        "insights/login_locked.html",
        {"retry_at": retry_at, "minutes": math.ceil(seconds / 60), "login_url": request.path},
        status=429,
    )
    response["Retry-After"] = str(seconds)
    response["Cache-Control"] = "no-store"
    return response
