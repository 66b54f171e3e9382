"""Rate limits per scope, counted in the default cache, so every web process shares them (Redis)."""

from __future__ import annotations

from django.conf import settings
from rest_framework import throttling


class _SettingsRateMixin:
    """Read the rate when it is needed, not at import time, so settings overrides apply."""

    scope: str

    def get_rate(self) -> str | None:
        return settings.APM_API_THROTTLE_RATES.get(self.scope)


class UserThrottle(_SettingsRateMixin, throttling.UserRateThrottle):
    """Every authenticated request, per user (anonymous ones per address)."""

    scope = "user"


class AnonThrottle(_SettingsRateMixin, throttling.AnonRateThrottle):
    scope = "anon"


class ScopedThrottle(_SettingsRateMixin, throttling.ScopedRateThrottle):
    """An extra limit for views that name a ``throttle_scope`` (token creation, push webhooks)."""
