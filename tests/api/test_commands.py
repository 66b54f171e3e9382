"""manage.py create_api_token."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apm.models import ApiToken

pytestmark = pytest.mark.django_db


def test_create_api_token_prints_a_working_secret_once(world):
    out, err = StringIO(), StringIO()

    call_command(
        "create_api_token", "viewer", "--scope", "read", "--expires-days", "30", stdout=out, stderr=err
    )

    raw = out.getvalue().strip()
    token = ApiToken.objects.get(user=world.users["viewer"], scope="read")
    assert raw.startswith("apm_")
    assert token.digest != raw
    assert raw not in err.getvalue()
    client = world.client("anonymous")
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert client.get("/api/v1/me/").json()["username"] == "viewer"
    assert client.post("/api/v1/projects/", {"name": "x"}, format="json").status_code == 403


@pytest.mark.parametrize(
    ("args", "message"),
    [(["ghost"], "No active user named 'ghost'"), (["viewer", "--expires-days", "0"], "positive number")],
)
def test_create_api_token_names_the_problem(world, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_api_token", *args, stdout=StringIO(), stderr=StringIO())
    assert not ApiToken.objects.filter(name="command line").exists()


def test_operators_revoke_tokens_in_the_admin(world, admin_client):
    token = ApiToken.objects.get(user=world.users["viewer"])

    page = admin_client.get("/admin/apm/apitoken/")
    response = admin_client.post(
        "/admin/apm/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )

    assert page.status_code == 200
    assert token.prefix.encode() in page.content
    assert b"Revoked 1 token(s)." in response.content
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert world.client("viewer").get("/api/v1/me/").status_code == 401
    assert admin_client.get("/admin/apm/apitoken/add/").status_code == 403
