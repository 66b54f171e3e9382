"""Rate limits per scope, counted in the default cache, so every web process shares them (Redis).

The counts go through the cache's breaker (``apm.cache``): a Redis that does not answer, or hangs, costs
the first request one short socket timeout, and the requests after it none.

The request limits count with two counters per caller, this window's and the last one's (a sliding
window estimated from them, ``_WindowCounting``), not with DRF's list of every request's time: one round
trip of a few bytes per request whatever the rate, where the list was read and written whole (10 KiB
and more at 1,200 a minute), and two requests at once both count, where one list overwrote the other.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import throttling
from rest_framework.request import Request

from apm.cache import GuardedCache, cache_reachable, window_count, window_read

# What the estimate may exceed the limit by through floating-point rounding alone: a caller that waited
# the Retry-After it was given (computed to the limit exactly) is let in, not refused at 10.000000000000002.
_ROUNDING = 1e-9


class _SettingsRateMixin:
    """Read the rate when it is needed, not at import time, so settings overrides apply."""

    scope: str | None
    # APM's limits count with apm.cache.window_count; DRF's own code would get and set through this, which
    # the guarded cache answers behind the breaker (typed as the BaseCache it replaces).
    cache: Any = GuardedCache()

    def get_rate(self) -> str | None:
        return settings.APM_API_THROTTLE_RATES.get(self.scope) if self.scope else None

    def allow_request(self, request: Request, view: Any) -> bool:
        # While the cache is known to be down nothing can be counted (django-redis would answer every
        # read with nothing anyway): let the request through at once rather than after a socket timeout.
        if not cache_reachable():
            return True
        return super().allow_request(request, view)  # type: ignore[misc]


class _WindowCounting(throttling.SimpleRateThrottle):
    """A request limit over a sliding window, estimated from fixed windows' counters.

    The count of the last full window is weighed by the share of it the sliding window still covers
    (Cloudflare's sliding-window counter): ``previous x (1 - elapsed / window) + current``. Refused
    requests count too, so a caller that keeps hammering stays refused.
    """

    num_requests: int
    duration: int
    _retry_after: float = 0.0

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        now = self.timer()
        counts = window_count(self.key, window=self.duration, now=now)
        if counts is None:  # the cache does not answer: nothing can be counted
            return True
        current, previous = counts
        elapsed = now % self.duration
        if previous * (1 - elapsed / self.duration) + current <= self.num_requests + _ROUNDING:
            return True
        self._retry_after = self._wait_of(current, previous, elapsed)
        return False

    def _wait_of(self, current: int, previous: int, elapsed: float) -> float:
        """Seconds until one more request fits (with no more requests meanwhile): ``current`` counts the
        refused one, and the request that waited counts one more."""
        window, limit = float(self.duration), self.num_requests
        if current < limit and previous:
            # Later in this window, as the last one's weight falls.
            return max(window * (1 - (limit - current - 1) / previous) - elapsed, 1.0)
        # In the next window, where this one's count is the one that fades.
        return window - elapsed + max(window * (1 - (limit - 1) / max(current, 1)), 0.0)

    def wait(self) -> float | None:
        return self._retry_after


class UserThrottle(_SettingsRateMixin, throttling.UserRateThrottle, _WindowCounting):
    """Every authenticated request, per user (anonymous ones per address)."""

    scope = "user"


class AnonThrottle(_SettingsRateMixin, throttling.AnonRateThrottle, _WindowCounting):
    scope = "anon"


class ScopedThrottle(_SettingsRateMixin, throttling.ScopedRateThrottle, _WindowCounting):
    """An extra limit for views that name a ``throttle_scope`` (token creation, push webhooks)."""


class FailedAuthenticationThrottle(_SettingsRateMixin, _WindowCounting):
    """Failed logins to the token routes, per address, at the ``tokens`` rate.

    DRF authenticates before its throttles run, so a wrong HTTP Basic password is answered 401 without
    ever being counted: passwords could be guessed at full speed. Failures are counted here instead,
    and once the rate is spent every request from that address waits, with the right password too.
    Counted with the request limits' counters: guesses made at once are all counted, where a list of
    failure times read and written whole by each kept one of them (guessing in parallel went unlimited).
    """

    scope = "tokens"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": f"{self.scope}_failed", "ident": self.get_ident(request)}

    def exhausted(self, request: Request) -> bool:
        if self.rate is None or not cache_reachable():
            return False
        self.key = self.get_cache_key(request, None)
        now = self.timer()
        counts = window_read(self.key, window=self.duration, now=now)
        if counts is None:
            return False
        current, previous = counts
        elapsed = now % self.duration
        if previous * (1 - elapsed / self.duration) + current < self.num_requests - _ROUNDING:
            return False
        self._retry_after = self._wait_of(current, previous, elapsed)
        return True

    def failure_record(self, request: Request) -> None:
        if self.rate is not None and cache_reachable():
            window_count(self.get_cache_key(request, None), window=self.duration, now=self.timer())
