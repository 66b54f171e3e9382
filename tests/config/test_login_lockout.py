"""The sign-in lockout (django-axes, config.lockout): too many wrong passwords for one account from one
address pause that account's sign-in from that address, on the admin's sign-in, the pages' own and HTTP
Basic on the token routes, until the cool-off ends or an operator runs ``manage.py axes_reset``.

The test settings turn the lockout off (config.settings.test); every test here turns it on, with the
limit and cool-off of the base settings.
"""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from axes.models import AccessAttempt
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from apm.services import api_token_create
from tests.factories import UserFactory
from tests.services import UNREACHABLE_REDIS

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
ATTACKER = "203.0.113.7"
ELSEWHERE = "198.51.100.20"
PAGES_LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture(autouse=True)
def lockout_on(settings):  # type: ignore[no-untyped-def]
    settings.AXES_ENABLED = True
    return settings


def sign_in(address: str, username: str, password: str, path: str = PAGES_LOGIN) -> tuple[Client, int]:
    """Post the sign-in form from ``address``; the client (signed in or not) and the answer's status."""
    client = Client()
    response = client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)
    return client, response.status_code


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def guess(settings, username: str, address: str = ATTACKER, path: str = PAGES_LOGIN) -> list[int]:  # type: ignore[no-untyped-def]
    """As many wrong passwords as the limit allows; the statuses of the answers."""
    return [sign_in(address, username, f"guess {n}", path)[1] for n in range(settings.AXES_FAILURE_LIMIT)]


def test_the_limit_and_cool_off_are_sensible_and_come_from_the_environment(settings):
    # 10 guesses per 15 minutes per account and address: 960 a day, far from a password's strength,
    # and a person who mistypes still gets a few tries.
    assert settings.AXES_FAILURE_LIMIT == 10
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AXES_HANDLER == "axes.handlers.database.AxesDatabaseHandler"


@pytest.mark.parametrize("path", [PAGES_LOGIN, ADMIN_LOGIN])
def test_after_the_limit_the_right_password_is_refused_with_a_page_saying_when(settings, path):
    user = UserFactory(is_staff=True)

    statuses = guess(settings, user.username, path=path)
    client = Client()
    response = client.post(path, {"username": user.username, "password": PASSWORD}, REMOTE_ADDR=ATTACKER)

    # Every wrong password but the last shows the form again; the last one already answers the lockout.
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert response.status_code == 429
    assert not signed_in(client)
    page = response.content.decode()
    assert "Sign-in paused" in page
    assert "in 15 minutes" in page
    assert f'href="{path}"' in page
    # The lockout runs from the last counted failure: within a few seconds of the whole cool-off.
    assert 15 * 60 - 10 <= int(response["Retry-After"]) <= 15 * 60
    assert response["Cache-Control"] == "no-store"


def test_attempts_while_locked_do_not_extend_the_lockout(settings):
    user = UserFactory()
    guess(settings, user.username)
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - dt.timedelta(minutes=10)
    )

    _, status = sign_in(ATTACKER, user.username, PASSWORD)
    _, status_again = sign_in(ATTACKER, user.username, "another guess")
    _client, later = sign_in(ATTACKER, user.username, PASSWORD)

    assert (status, status_again, later) == (429, 429, 429)
    attempt = AccessAttempt.objects.get()
    assert attempt.failures_since_start == settings.AXES_FAILURE_LIMIT
    # Five minutes left, as the page says.
    response = Client().post(
        PAGES_LOGIN, {"username": user.username, "password": PASSWORD}, REMOTE_ADDR=ATTACKER
    )
    assert 4 * 60 < int(response["Retry-After"]) <= 5 * 60
    assert "in 5 minutes" in response.content.decode()


def test_another_user_from_the_same_address_still_signs_in(settings):
    attacked, colleague = UserFactory(), UserFactory()
    guess(settings, attacked.username)

    locked_client, locked = sign_in(ATTACKER, attacked.username, PASSWORD)
    client, status = sign_in(ATTACKER, colleague.username, PASSWORD)

    assert locked == 429
    assert not signed_in(locked_client)
    assert status == 302
    assert signed_in(client)


def test_the_attacked_user_still_signs_in_from_another_address(settings):
    user = UserFactory()
    guess(settings, user.username)

    locked_client, locked = sign_in(ATTACKER, user.username, PASSWORD)
    client, status = sign_in(ELSEWHERE, user.username, PASSWORD)

    assert locked == 429
    assert not signed_in(locked_client)
    assert status == 302
    assert signed_in(client)


def test_spellings_of_a_username_in_other_cases_count_as_one_account(settings):
    # MariaDB signs "ALICE" in as alice: each spelling must not get ten guesses of its own.
    user = UserFactory(username="alice")
    spellings = ["Alice", "ALICE", "aLiCe", "alicE", "alice"]
    for n in range(settings.AXES_FAILURE_LIMIT):
        sign_in(ATTACKER, spellings[n % len(spellings)], f"guess {n}")

    client, status = sign_in(ATTACKER, user.username, PASSWORD)

    assert status == 429
    assert not signed_in(client)
    assert set(AccessAttempt.objects.values_list("username", flat=True)) == {"alice"}


def test_the_lockout_holds_with_redis_unreachable(settings):
    # The API's rate limits, counted in the cache, let requests through while Redis is down; the lockout
    # is counted in the database, so it does not open with the cache.
    settings.CACHES = UNREACHABLE_REDIS
    user = UserFactory()
    try:
        statuses = guess(settings, user.username)
        client, status = sign_in(ATTACKER, user.username, PASSWORD)
        other_client, other = sign_in(ELSEWHERE, user.username, PASSWORD)
    finally:
        caches["default"].close()

    assert statuses[-1] == 429
    assert status == 429
    assert not signed_in(client)
    assert other == 302
    assert signed_in(other_client)


def test_the_lockout_ends_with_the_cool_off(settings):
    user = UserFactory()
    guess(settings, user.username)
    _, locked = sign_in(ATTACKER, user.username, PASSWORD)

    # Fifteen minutes and a second later.
    AccessAttempt.objects.update(
        attempt_time=dt.datetime.now(dt.UTC) - settings.AXES_COOLOFF_TIME - dt.timedelta(seconds=1)
    )
    client, status = sign_in(ATTACKER, user.username, PASSWORD)

    assert locked == 429
    assert status == 302
    assert signed_in(client)
    # A success clears the account's count from that address: one mistype later is not a lockout.
    assert not AccessAttempt.objects.exists()


def test_an_operator_lifts_every_lockout_with_axes_reset(settings):
    user = UserFactory()
    guess(settings, user.username)
    _, locked = sign_in(ATTACKER, user.username, PASSWORD)

    call_command("axes_reset", verbosity=0)
    client, status = sign_in(ATTACKER, user.username, PASSWORD)

    assert locked == 429
    assert status == 302
    assert signed_in(client)


def test_a_forged_x_forwarded_for_does_not_dodge_the_lockout(settings):
    # Without a proxy in front (APM_NUM_PROXIES=0) the address is the connection's own.
    user = UserFactory()
    statuses = [
        Client()
        .post(
            PAGES_LOGIN,
            {"username": user.username, "password": f"guess {n}"},
            REMOTE_ADDR=ATTACKER,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}",
        )
        .status_code
        for n in range(settings.AXES_FAILURE_LIMIT)
    ]
    response = Client().post(
        PAGES_LOGIN,
        {"username": user.username, "password": PASSWORD},
        REMOTE_ADDR=ATTACKER,
        HTTP_X_FORWARDED_FOR="192.0.2.200",
    )

    assert statuses[-1] == 429
    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}


def test_behind_the_proxy_the_address_is_the_one_it_appends(settings):
    # Behind the ingress (APM_NUM_PROXIES=1) every request comes from the proxy's address: the client's is
    # the last one in X-Forwarded-For, the one the proxy wrote; what the client put before it is ignored.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "10.0.0.5"
    user = UserFactory()
    for n in range(settings.AXES_FAILURE_LIMIT):
        Client().post(
            PAGES_LOGIN,
            {"username": user.username, "password": f"guess {n}"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, {ATTACKER}",
        )

    locked = Client().post(
        PAGES_LOGIN,
        {"username": user.username, "password": PASSWORD},
        REMOTE_ADDR=proxy,
        HTTP_X_FORWARDED_FOR=ATTACKER,
    )
    elsewhere = Client().post(
        PAGES_LOGIN,
        {"username": user.username, "password": PASSWORD},
        REMOTE_ADDR=proxy,
        HTTP_X_FORWARDED_FOR=ELSEWHERE,
    )

    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}
    assert locked.status_code == 429
    assert elsewhere.status_code == 302


# --- The API's ways in ---------------------------------------------------------------------------------


def basic(username: str, password: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=ATTACKER)
    client.credentials(
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    )
    return client


def test_http_basic_on_the_token_route_is_locked_too_and_answers_in_the_api_shape(settings):
    user = UserFactory()
    failures = [basic(user.username, f"guess {n}").post("/api/v1/tokens/", {"name": "ci"}) for n in range(10)]

    response = basic(user.username, PASSWORD).post("/api/v1/tokens/", {"name": "ci"})

    assert {failure.status_code for failure in failures} == {401}
    # The right password, refused like a wrong one: the API's JSON error, not the pages' lockout page.
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()
    assert AccessAttempt.objects.get().failures_since_start == settings.AXES_FAILURE_LIMIT


def test_tokens_and_sessions_keep_working_for_a_locked_account(settings):
    # The lockout stops password guessing; a token or a session already granted is another credential.
    user = UserFactory()
    _, raw = api_token_create(user=user, name="ci")
    session = APIClient()
    session.force_login(user)
    guess(settings, user.username)
    assert sign_in(ATTACKER, user.username, PASSWORD)[1] == 429

    token_client = APIClient(REMOTE_ADDR=ATTACKER)
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    by_token = token_client.get("/api/v1/me/")
    by_session = session.get("/api/v1/me/", REMOTE_ADDR=ATTACKER)

    assert by_token.status_code == 200
    assert by_token.json()["username"] == user.username
    assert by_session.status_code == 200
    assert by_session.json()["username"] == user.username
