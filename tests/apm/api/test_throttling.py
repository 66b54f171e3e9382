"""The API's request limits: counters per window in the shared cache (apm.api.throttling)."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIRequestFactory

from apm.api.throttling import FailedAuthenticationThrottle, UserThrottle
from apm.cache import window_count
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def throttle_at(clock: Clock) -> UserThrottle:
    throttle = UserThrottle()
    throttle.timer = clock  # type: ignore[method-assign]  (DRF's own seam for the time)
    return throttle


def request_of(user: Any) -> Any:
    request = APIRequestFactory().get("/api/v1/me/")
    request.user = user
    return request


def test_requests_over_the_rate_are_refused_until_the_window_slides(settings):
    settings.APM_API_THROTTLE_RATES = {**settings.APM_API_THROTTLE_RATES, "user": "4/min"}
    request = request_of(UserFactory())
    clock = Clock(600.0)  # the start of a window

    answers = [throttle_at(clock).allow_request(request, None) for _ in range(5)]
    assert answers == [True, True, True, True, False]
    refused = throttle_at(clock)
    assert not refused.allow_request(request, None)
    assert refused.wait() > 0

    # Half of the next window: the last one's six counted requests weigh three, and one more fits.
    clock.now = 600.0 + 60 + 30
    assert throttle_at(clock).allow_request(request, None)
    assert not throttle_at(clock).allow_request(request, None)
    # Two windows later nothing is left of them.
    clock.now = 600.0 + 180
    assert all(throttle_at(clock).allow_request(request, None) for _ in range(4))


def test_each_user_has_a_count_of_their_own(settings):
    settings.APM_API_THROTTLE_RATES = {**settings.APM_API_THROTTLE_RATES, "user": "2/min"}
    clock = Clock(1200.0)
    first, second = request_of(UserFactory()), request_of(UserFactory())

    assert [throttle_at(clock).allow_request(first, None) for _ in range(3)] == [True, True, False]
    assert throttle_at(clock).allow_request(second, None)


def test_requests_counted_at_once_are_all_counted():
    """DRF's list of request times was read and written whole: two requests at once kept one of the two
    additions. Counters add both."""
    threads = [
        threading.Thread(target=window_count, args=("at-once",), kwargs={"window": 60, "now": 60.0})
        for _ in range(40)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert window_count("at-once", window=60, now=60.0) == (41, 0)


def test_the_stored_count_stays_a_number_whatever_the_rate():
    for _ in range(500):
        window_count("busy", window=60, now=120.0)

    assert cache.get("busy:2") == 500
    assert window_count("busy", window=60, now=180.0) == (1, 500)


def test_without_a_cache_nothing_is_counted_and_nothing_refused(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    settings.APM_API_THROTTLE_RATES = {**settings.APM_API_THROTTLE_RATES, "user": "1/min"}
    request = request_of(UserFactory())

    assert window_count("nothing", window=60, now=60.0) is None
    assert all(throttle_at(Clock(60.0)).allow_request(request, None) for _ in range(3))


@pytest.mark.parametrize("before", [11, 12, 15, 20, 25, 37])
@pytest.mark.parametrize("elapsed", [4.8, 5.0, 30.0, 50.0])
def test_a_caller_who_waits_the_retry_after_given_is_let_in(settings, before: int, elapsed: float):
    # DRF answers the wait rounded up to whole seconds (Retry-After); a caller that waits that long and
    # asks once must be let in, not refused (and counted) again.
    settings.APM_API_THROTTLE_RATES = {**settings.APM_API_THROTTLE_RATES, "user": "10/min"}
    request = request_of(UserFactory())
    clock = Clock(6000.0)  # the start of a window
    for _ in range(before):
        throttle_at(clock).allow_request(request, None)

    clock.now = 6000.0 + 60 + elapsed
    throttle = throttle_at(clock)
    while throttle.allow_request(request, None):
        throttle = throttle_at(clock)
    wait = throttle.wait()
    assert wait is not None
    assert wait > 0

    clock.now += math.ceil(wait)
    assert throttle_at(clock).allow_request(request, None)


def test_failed_logins_made_at_once_are_all_counted(settings):
    """Each failure was appended to a list read and written whole: guesses made in parallel kept one
    failure of many, and a password could be guessed without limit by guessing at once."""
    settings.APM_API_THROTTLE_RATES = {**settings.APM_API_THROTTLE_RATES, "tokens": "30/min"}
    request = APIRequestFactory().post("/api/v1/tokens/", REMOTE_ADDR="203.0.113.41")
    start = threading.Barrier(40)

    def guess_failed() -> None:
        start.wait()
        FailedAuthenticationThrottle().failure_record(request)

    threads = [threading.Thread(target=guess_failed) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    throttle = FailedAuthenticationThrottle()
    assert throttle.exhausted(request)
    wait = throttle.wait()
    assert wait is not None
    assert 0 < wait <= 120  # within the next window, as the counts fade
