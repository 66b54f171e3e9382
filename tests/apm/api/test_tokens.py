"""API tokens end to end over HTTP: creation (secret shown once), storage, authentication, revocation.

Every test talks to the real database through the real URL configuration; tokens are created through the
API itself (HTTP Basic for the first one) or by the ``world`` fixture's ``api_token_create``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apm.cache import stamped_get, stamped_set
from apm.models import ApiToken
from apm.services import (
    api_token_authenticate,
    api_token_create,
    api_token_digest,
    api_token_revoke,
    api_tokens_forget,
)
from monitoring.metrics import API_TOKENS_AUTHENTICATED
from projects.models import Project
from tests.authentication import authentication_queries
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
TOKENS = "/api/v1/tokens/"
ME = "/api/v1/me/"


def basic_client(username: str, password: str = PASSWORD) -> APIClient:
    client = APIClient()
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
    return client


def token_client(raw: str, keyword: str = "Token") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {raw}")
    return client


def create_over_basic(username: str, **body: Any) -> dict[str, Any]:
    response = basic_client(username).post(TOKENS, {"name": "CI", **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def assert_error_shape(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("detail"), str)
    assert body["detail"]
    return body


# --- Creation and storage -----------------------------------------------------------------------------


def test_basic_auth_creates_a_token_and_shows_its_secret_once():
    user = UserFactory(username="ada")

    body = create_over_basic("ada", scope="read")

    raw = body["token"]
    assert raw.startswith("apm_")
    assert len(raw) > 40
    assert body["name"] == "CI"
    assert body["scope"] == "read"
    assert body["is_active"] is True
    assert body["prefix"] == raw[: len(body["prefix"])]
    assert len(body["prefix"]) < len(raw)
    token = ApiToken.objects.get(pk=body["id"])
    assert token.user == user

    # The secret is never shown again: not in the list, not in the detail.
    client = token_client(raw)
    listed = client.get(TOKENS)
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [token.pk]
    detail = client.get(f"{TOKENS}{token.pk}/")
    assert detail.status_code == 200
    for response in (listed, detail):
        assert raw not in response.content.decode()
    assert "token" not in listed.json()["results"][0]
    assert "token" not in detail.json()
    assert "digest" not in detail.json()


def test_the_database_stores_only_the_sha256_digest():
    UserFactory(username="ada")

    raw = create_over_basic("ada")["token"]

    row = ApiToken.objects.filter(user__username="ada").values().get()
    assert row["digest"] == hashlib.sha256(raw.encode()).hexdigest()
    for column, value in row.items():
        assert raw not in str(value), f"the secret is stored in {column}"
    # Neither is the secret without its public "apm_" marker.
    assert not any(raw[4:] in str(value) for value in row.values())


def test_a_wrong_password_on_basic_is_401_and_creates_nothing():
    UserFactory(username="ada")

    response = basic_client("ada", "wrong horse").post(TOKENS, {"name": "CI"}, format="json")

    assert_error_shape(response, 401)
    assert response.has_header("WWW-Authenticate")
    assert not ApiToken.objects.exists()


def test_an_expiry_in_the_past_is_400_on_expires_at(world):
    past = (timezone.now() - datetime.timedelta(days=1)).isoformat()

    response = basic_client("member").post(TOKENS, {"name": "old", "expires_at": past}, format="json")

    body = assert_error_shape(response, 400)
    assert body["detail"] == "Invalid input."
    assert body["errors"]["expires_at"]
    assert all(isinstance(message, str) for message in body["errors"]["expires_at"])
    assert ApiToken.objects.filter(user=world.users["member"]).count() == 1  # only the fixture's


def test_an_expiry_in_the_future_is_kept(world):
    future = timezone.now() + datetime.timedelta(days=30)

    response = basic_client("member").post(TOKENS, {"name": "month", "expires_at": future.isoformat()})

    assert response.status_code == 201
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert abs(token.expires_at - future) < datetime.timedelta(seconds=1)


def test_clients_cannot_set_read_only_fields_of_a_token(world):
    response = basic_client("member").post(
        TOKENS, {"name": "sneaky", "revoked_at": None, "digest": "0" * 64}, format="json"
    )

    body = assert_error_shape(response, 400)
    assert set(body["errors"]) == {"revoked_at", "digest"}


# --- Authentication -----------------------------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["Token", "Bearer", "token", "bearer"])
def test_a_token_authenticates_me_with_token_or_bearer(keyword: str):
    user = UserFactory(username="ada")
    created = create_over_basic("ada")

    response = token_client(created["token"], keyword).get(ME)

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["username"], body["is_staff"]) == (user.pk, "ada", False)
    assert body["token"]["id"] == created["id"]
    assert body["token"]["prefix"] == created["prefix"]
    assert "token" not in body["token"]
    assert created["token"] not in response.content.decode()


def test_basic_auth_is_accepted_only_to_create_tokens():
    UserFactory(username="ada")

    # The other routes use the default authentication classes, which do not include Basic.
    assert_error_shape(basic_client("ada").get(ME), 401)
    assert_error_shape(basic_client("ada").get("/api/v1/projects/"), 401)


def test_a_revoked_token_is_refused(world):
    client = token_client(world.tokens["member"])
    token = client.get(ME).json()["token"]

    response = client.delete(f"{TOKENS}{token['id']}/")

    assert response.status_code == 204
    assert ApiToken.objects.get(pk=token["id"]).revoked_at is not None
    again = client.get(ME)
    assert_error_shape(again, 401)
    assert again.has_header("WWW-Authenticate")
    # Other tokens of the same user keep working.
    _other, raw = api_token_create(user=world.users["member"], name="second")
    assert token_client(raw).get(ME).status_code == 200


def test_revoking_twice_keeps_the_first_revocation_time(world):
    user = world.users["member"]
    token, _raw = api_token_create(user=user, name="to revoke")
    client = world.client("member")
    assert client.delete(f"{TOKENS}{token.pk}/").status_code == 204
    first = ApiToken.objects.get(pk=token.pk).revoked_at

    second = client.delete(f"{TOKENS}{token.pk}/")

    assert second.status_code == 204
    assert ApiToken.objects.get(pk=token.pk).revoked_at == first


def test_an_expired_token_is_refused(world):
    token, raw = api_token_create(
        user=world.users["member"], name="soon", expires_at=timezone.now() + datetime.timedelta(hours=1)
    )
    assert token_client(raw).get(ME).status_code == 200
    # As an operator moves it in the admin: a save, which also drops the token the cache remembers.
    token.expires_at = timezone.now() - datetime.timedelta(seconds=1)
    token.save(update_fields=["expires_at"])

    response = token_client(raw).get(ME)

    body = assert_error_shape(response, 401)
    assert "expired" in body["detail"].lower()


def test_the_token_of_an_inactive_user_is_refused(world):
    user = world.users["member"]
    assert world.client("member").get(ME).status_code == 200
    user.is_active = False
    user.save(update_fields=["is_active"])

    assert_error_shape(world.client("member").get(ME), 401)


@pytest.mark.parametrize(
    "header",
    [
        "Token a b",
        "Token",
        "Bearer",
        "Token apm_not-a-real-token",
        "Token not-even-prefixed",
        "Token apm_" + "x" * 200,
    ],
)
def test_a_malformed_or_unknown_token_is_401_with_the_error_shape(world, header: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v1/projects/")

    body = assert_error_shape(response, 401)
    assert set(body) == {"detail"}
    assert response["WWW-Authenticate"].startswith("Token")


def test_a_token_with_a_space_splits_into_two_words_and_is_refused(world):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {world.tokens['member']} extra")

    body = assert_error_shape(client.get(ME), 401)
    assert "malformed" in body["detail"].lower()


def test_an_unauthenticated_request_is_401_with_a_challenge(world):
    response = APIClient().get("/api/v1/projects/")

    body = assert_error_shape(response, 401)
    assert set(body) == {"detail"}
    assert response["WWW-Authenticate"] == 'Token realm="api"'


def test_an_unauthenticated_token_list_is_401_with_a_challenge(world):
    response = APIClient().get(TOKENS)

    assert_error_shape(response, 401)
    assert response.has_header("WWW-Authenticate")


# --- Scopes and ownership ------------------------------------------------------------------------------


def test_a_read_only_token_reads_but_cannot_write(world):
    client = world.client("owner", scope=ApiToken.Scope.READ)

    assert client.get("/api/v1/projects/").status_code == 200
    assert client.get("/api/v1/projects/ALPHA/").status_code == 200
    response = client.post("/api/v1/projects/", {"name": "Gamma", "key": "GAMMA"}, format="json")

    body = assert_error_shape(response, 403)
    assert "read-only" in body["detail"]
    assert not Project.objects.filter(key="GAMMA").exists()
    # The same user's write token may.
    assert (
        world.client("owner").post("/api/v1/projects/", {"name": "Gamma", "key": "GAMMA"}).status_code == 201
    )


def test_a_read_only_token_cannot_create_a_write_token(world):
    client = world.client("member", scope=ApiToken.Scope.READ)
    before = ApiToken.objects.count()

    response = client.post(TOKENS, {"name": "escalate", "scope": "write"}, format="json")

    assert_error_shape(response, 403)
    assert ApiToken.objects.count() == before


def test_users_cannot_see_or_revoke_each_others_tokens(world):
    theirs, _raw = api_token_create(user=world.users["outsider"], name="private")
    client = world.client("member")

    listed = client.get(TOKENS).json()["results"]
    assert theirs.pk not in [row["id"] for row in listed]
    assert {row["name"] for row in listed} == {"tests"}
    assert_error_shape(client.get(f"{TOKENS}{theirs.pk}/"), 404)
    assert_error_shape(client.delete(f"{TOKENS}{theirs.pk}/"), 404)

    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is None


def test_staff_cannot_revoke_someone_elses_token_through_the_api(world):
    theirs, raw = api_token_create(user=world.users["member"], name="private")

    assert_error_shape(world.client("staff").delete(f"{TOKENS}{theirs.pk}/"), 404)

    assert token_client(raw).get(ME).status_code == 200


# --- Last use ------------------------------------------------------------------------------------------


def test_last_used_at_is_written_on_first_use_then_at_most_every_five_minutes(world):
    token, raw = api_token_create(user=world.users["member"], name="usage")
    assert token.last_used_at is None
    client = token_client(raw)

    assert client.get(ME).status_code == 200
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    assert timezone.now() - first < datetime.timedelta(minutes=1)

    assert client.get(ME).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at == first

    # Older than the resolution: written again. The stored time is moved back, and the token the shared
    # cache remembers (with the time it read) forgotten, as its entry would have expired by then.
    stale = timezone.now() - datetime.timedelta(minutes=6)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=stale)
    api_tokens_forget()
    assert client.get(ME).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at > stale + datetime.timedelta(minutes=5)


def test_authenticating_a_recently_used_token_is_one_query_or_none(world, django_assert_num_queries):
    token, raw = api_token_create(user=world.users["member"], name="usage")
    with django_assert_num_queries(2):  # the lookup, and the first write of last_used_at
        assert api_token_authenticate(raw) == token

    # The lookup only; none when the shared cache (Redis) remembers the token.
    with django_assert_num_queries(authentication_queries()):
        again = api_token_authenticate(raw)

    assert again == token
    assert again.user == world.users["member"]
    assert again.scope == token.scope


def test_a_token_read_before_its_revocation_committed_is_never_served_after(
    world, django_capture_on_commit_callbacks
):
    """The race a remembered token leaves open: a request reads the token from the database just before a
    revocation commits and stores it just after. It stored it under the generation it saw first, which
    the revocation's commit left behind."""
    token, raw = api_token_create(user=world.users["member"], name="raced")
    assert api_token_authenticate(raw) == token
    key = f"apitokens:{api_token_digest(raw)}"
    _found, stamp = stamped_get(key, namespace="apitokens")  # the racing request, before its query
    active = ApiToken.objects.select_related("user").get(pk=token.pk)  # what it read

    with django_capture_on_commit_callbacks(execute=True):
        api_token_revoke(token=token)
    stamped_set(key, active, stamp=stamp, timeout=60)  # stored after the commit

    assert api_token_authenticate(raw) is None
    assert_error_shape(token_client(raw).get(ME), 401)


def test_removing_a_user_refuses_the_tokens_it_held(world, django_capture_on_commit_callbacks):
    user = UserFactory()
    _token, raw = api_token_create(user=user, name="leaving")
    assert token_client(raw).get(ME).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        user.delete()

    assert api_token_authenticate(raw) is None


def test_signing_in_keeps_the_remembered_tokens(world, django_assert_num_queries):
    """A sign-in writes the user's last_login alone: the tokens the cache remembers stay (a session
    sign-in does not make every integration's next request a query)."""
    _token, raw = api_token_create(user=world.users["member"], name="kept")
    api_token_authenticate(raw)
    user = world.users["member"]
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])

    with django_assert_num_queries(authentication_queries()):
        assert api_token_authenticate(raw) is not None


# --- Throttling ----------------------------------------------------------------------------------------

RATES = {"user": "1000/min", "anon": "1000/min", "hooks": "1000/min"}


def test_token_creation_is_throttled(world, settings):
    settings.APM_API_THROTTLE_RATES = {**RATES, "tokens": "2/min"}
    client = basic_client("member")

    answers = [client.post(TOKENS, {"name": f"t{n}"}, format="json") for n in range(3)]

    assert [answer.status_code for answer in answers] == [201, 201, 429]
    assert int(answers[2]["Retry-After"]) > 0
    assert_error_shape(answers[2], 429)
    assert ApiToken.objects.filter(user=world.users["member"]).count() == 3  # the fixture's and two


def test_guessing_a_password_over_basic_is_throttled(settings):
    settings.APM_API_THROTTLE_RATES = {**RATES, "tokens": "3/min"}
    UserFactory(username="ada")

    guesses = [basic_client("ada", f"guess {n}").post(TOKENS, {"name": "CI"}) for n in range(5)]

    assert [guess.status_code for guess in guesses] == [401, 401, 401, 429, 429]
    assert guesses[3].has_header("Retry-After")
    assert_error_shape(guesses[3], 429)
    # Even the right password waits until the window has passed: guessing is not rewarded.
    assert basic_client("ada").post(TOKENS, {"name": "CI"}).status_code == 429
    assert not ApiToken.objects.exists()


def test_a_token_cannot_create_tokens(world):
    """A leaked token must not outlive its expiry or revocation by minting a successor."""
    response = world.client("member").post(TOKENS, {"name": "successor"}, format="json")

    assert_error_shape(response, 403)
    assert "password" in response.json()["detail"]
    assert ApiToken.objects.filter(user=world.users["member"]).count() == 1


def test_token_authentications_are_counted_by_outcome(world):
    def count(outcome: str) -> float:
        return API_TOKENS_AUTHENTICATED.labels(outcome=outcome)._value.get()

    accepted, refused = count("accepted"), count("refused")
    world.client("member").get(ME)
    token_client("apm_not-a-real-token").get(ME)

    assert (count("accepted") - accepted, count("refused") - refused) == (1, 1)


def test_only_creation_counts_against_the_token_rate(world, settings):
    settings.APM_API_THROTTLE_RATES = {**RATES, "user": "1000/min", "tokens": "1/min"}
    client = basic_client("member")

    created = client.post(TOKENS, {"name": "one"}, format="json")
    listings = [client.get(TOKENS).status_code for _ in range(3)]
    again = client.post(TOKENS, {"name": "two"}, format="json")

    assert created.status_code == 201
    assert listings == [200, 200, 200]
    assert again.status_code == 429
