"""No route of a project tells a signed-in user which usernames have an account.

Any signed-in user can create a project and own it, so an owner is anybody: every answer about a name
is compared here across an unknown name, an active account outside the project, an inactive account
and a staff account, byte for byte, and with the same queries (one branch making a query the others do
not would show in the timing).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from projects.models import Membership
from tests.enumeration import answer_of, assert_all_alike
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

# Names a request may carry, none of them a member of ALPHA: no account, an active account (a member of
# BETA), an inactive account, a staff account.
OUTSIDE_NAMES = ("ghost", "outsider", "dormant", "staff")


@pytest.fixture
def names(world: Any) -> Any:
    UserFactory(username="dormant", is_active=False)
    return world


@pytest.mark.parametrize("who", ["owner", "maintainer"])
def test_every_member_route_answers_alike_for_every_name(names, who):
    client = names.client(who)
    client.get("/api/v1/me/")  # the token's last use is written on the first request only
    members = "/api/v1/projects/ALPHA/members/"

    # Adding: refused before the name is read (people join by invitation), so a member's name too.
    added = {
        name: answer_of(client, "post", members, {"user": name, "role": "member"})
        for name in (*OUTSIDE_NAMES, "viewer")
    }
    # Reading, changing, removing: a name outside the project is not found, whatever it is.
    routes = {
        method: {name: answer_of(client, method, f"{members}{name}/", body) for name in OUTSIDE_NAMES}
        for method, body in (("get", None), ("patch", {"role": "viewer"}), ("delete", None))
    }

    assert_all_alike(added)
    assert added["ghost"][0] == 403
    for method, answers in routes.items():
        assert_all_alike(answers)
        assert answers["ghost"][:2] == (404, b'{"detail":"Not found."}'), method
    assert Membership.objects.filter(project=names.project).count() == 4


def test_inviting_answers_alike_whether_the_name_has_an_account(names, monkeypatch):
    # One project per case, all owned by the same person, so each invitation is a first one; the clock
    # stands still, so the timestamps in the answers are the same.
    owner = names.users["owner"]
    moment = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: moment)
    client = names.client("owner")
    client.get("/api/v1/me/")
    states = {
        "no account": lambda: None,
        "an active account outside the project": lambda: UserFactory(username="candidate"),
        "an inactive account": lambda: (
            type(owner).objects.filter(username="candidate").update(is_active=False)
        ),
        "a staff account": lambda: (
            type(owner).objects.filter(username="candidate").update(is_active=True, is_staff=True)
        ),
    }

    answers = {}
    for number, (state, arrange) in enumerate(states.items()):
        project = ProjectFactory(key=f"INV{number}")
        MembershipFactory(project=project, user=owner, role=Membership.Role.OWNER)
        arrange()
        answers[state] = answer_of(
            client,
            "post",
            f"/api/v1/projects/INV{number}/invitations/",
            {"username": "candidate", "role": "member"},
        )

    assert_all_alike(answers)
    status, content, _queries = answers["no account"]
    assert status == 201
    expires = (moment + datetime.timedelta(days=14)).isoformat().replace("+00:00", "Z")
    assert f'"expires_at":"{expires}"'.encode() in content
    assert not Membership.objects.filter(user__username="candidate").exists()
