"""How people join a project: an owner invites a username, its holder accepts or declines.

Nobody becomes a member without their consent (only staff add members directly); an invitation is
answered by its invitee alone, expires, and accepting it any number of times makes one membership.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apm.services import api_token_create
from projects.models import Invitation, Membership
from projects.services import invitation_create
from tests.authentication import authentication_queries
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

INVITATIONS = "/api/v1/projects/ALPHA/invitations/"
RECEIVED = "/api/v1/invitations/"


@pytest.fixture
def newcomer(world: Any) -> Any:
    """A signed-up user who is in no project yet."""
    return _join_world(world, "newcomer")


def _join_world(world: Any, username: str) -> Any:
    user = UserFactory(username=username)
    world.users[username] = user
    world.tokens[username] = api_token_create(user=user, name="tests")[1]
    return user


def test_an_owner_invites_and_the_invitee_accepts_once(world, newcomer):
    invited = world.client("owner").post(
        INVITATIONS, {"username": "newcomer", "role": "maintainer"}, format="json"
    )
    pending = world.client("newcomer").get(RECEIVED).json()
    not_yet = Membership.objects.filter(project=world.project, user=newcomer).exists()

    first = world.client("newcomer").post(f"{RECEIVED}alpha/accept/")
    second = world.client("newcomer").post(f"{RECEIVED}ALPHA/accept/")

    assert invited.status_code == 201
    assert (invited.json()["username"], invited.json()["role"], invited.json()["invited_by"]) == (
        "newcomer",
        "maintainer",
        "owner",
    )
    assert [(row["project"], row["project_name"], row["role"]) for row in pending] == [
        ("ALPHA", "Alpha", "maintainer")
    ]
    assert not not_yet, "an invitation alone makes nobody a member"
    assert (first.status_code, first.json()) == (second.status_code, second.json())
    assert (first.status_code, first.json()["user"], first.json()["role"]) == (200, "newcomer", "maintainer")
    assert Membership.objects.filter(project=world.project, user=newcomer).count() == 1
    assert world.client("newcomer").get(RECEIVED).json() == []
    assert world.client("owner").get(INVITATIONS).json() == []
    assert world.client("newcomer").get("/api/v1/projects/ALPHA/").status_code == 200
    invitation = Invitation.objects.get()
    assert (invitation.status, invitation.responded_at is not None) == ("accepted", True)


def test_identical_invitations_are_one_pending_invitation(world):
    owner = world.client("owner")

    answers = [
        owner.post(INVITATIONS, {"username": "ghost", "role": role}, format="json")
        for role in ("member", "member", "member", "viewer")
    ]

    assert [answer.status_code for answer in answers] == [201, 200, 200, 200]
    assert Invitation.objects.count() == 1
    listed = owner.get(INVITATIONS).json()
    assert [(row["username"], row["role"]) for row in listed] == [("ghost", "viewer")]


def test_an_invitation_to_a_name_without_account_waits_for_whoever_gets_it(world):
    world.client("owner").post(INVITATIONS, {"username": "later", "role": "member"}, format="json")
    user = _join_world(world, "later")

    accepted = world.client("later").post(f"{RECEIVED}ALPHA/accept/")

    assert accepted.status_code == 200
    assert Membership.objects.get(project=world.project, user=user).role == "member"


def test_a_declined_invitation_cannot_be_accepted_and_declining_again_changes_nothing(world, newcomer):
    world.client("owner").post(INVITATIONS, {"username": "newcomer"}, format="json")
    client = world.client("newcomer")

    declined = client.post(f"{RECEIVED}ALPHA/decline/")
    again = client.post(f"{RECEIVED}ALPHA/decline/")
    accepted = client.post(f"{RECEIVED}ALPHA/accept/")

    assert (declined.status_code, again.status_code) == (204, 204)
    assert accepted.status_code == 400
    assert accepted.json()["errors"]["non_field_errors"] == [
        "This invitation was declined; ask an owner of ALPHA again."
    ]
    assert not Membership.objects.filter(project=world.project, user=newcomer).exists()
    assert client.get(RECEIVED).json() == []
    assert world.client("owner").get(INVITATIONS).json() == []


def test_an_invitation_expires(world, newcomer, settings):
    world.client("owner").post(INVITATIONS, {"username": "newcomer"}, format="json")
    invitation = Invitation.objects.get()
    assert invitation.expires_at - invitation.created_at == pytest.approx(
        datetime.timedelta(days=settings.APM_INVITATION_EXPIRY_DAYS), abs=datetime.timedelta(seconds=5)
    )
    Invitation.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))

    listed = world.client("newcomer").get(RECEIVED).json()
    accepted = world.client("newcomer").post(f"{RECEIVED}ALPHA/accept/")
    owners_view = world.client("owner").get(INVITATIONS).json()
    renewed = world.client("owner").post(INVITATIONS, {"username": "newcomer"}, format="json")
    accepted_after_renewal = world.client("newcomer").post(f"{RECEIVED}ALPHA/accept/")

    assert listed == []
    assert accepted.status_code == 400
    assert "expired" in accepted.json()["errors"]["non_field_errors"][0]
    assert [(row["username"], row["is_expired"]) for row in owners_view] == [("newcomer", True)]
    assert (renewed.status_code, renewed.json()["is_expired"]) == (200, False)
    assert accepted_after_renewal.status_code == 200


def test_the_expiry_is_a_setting(world, settings):
    settings.APM_INVITATION_EXPIRY_DAYS = 2

    answer = world.client("owner").post(INVITATIONS, {"username": "ghost"}, format="json")

    invitation = Invitation.objects.get()
    assert answer.status_code == 201
    assert invitation.expires_at - invitation.created_at < datetime.timedelta(days=2, seconds=5)
    assert invitation.expires_at - invitation.created_at > datetime.timedelta(days=2, seconds=-5)


def test_owners_revoke_pending_invitations(world, newcomer):
    owner = world.client("owner")
    owner.post(INVITATIONS, {"username": "newcomer"}, format="json")

    revoked = owner.delete(f"{INVITATIONS}newcomer/")
    revoked_again = owner.delete(f"{INVITATIONS}newcomer/")
    accepted = world.client("newcomer").post(f"{RECEIVED}ALPHA/accept/")

    assert (revoked.status_code, revoked_again.status_code) == (204, 404)
    assert accepted.status_code == 400
    assert "revoked" in accepted.json()["errors"]["non_field_errors"][0]
    assert not Membership.objects.filter(project=world.project, user=newcomer).exists()
    assert owner.get(INVITATIONS).json() == []


@pytest.mark.parametrize("who", ["maintainer", "member", "viewer"])
def test_only_owners_invite_list_and_revoke(world, who):
    invitation_create(project=world.project, username="ghost", role="member", invited_by=world.users["owner"])
    client = world.client(who)

    answers = [
        client.post(INVITATIONS, {"username": "someone", "role": "member"}, format="json"),
        client.get(INVITATIONS),
        client.delete(f"{INVITATIONS}ghost/"),
    ]

    assert [answer.status_code for answer in answers] == [403, 403, 403]
    assert list(Invitation.objects.values_list("username", "status")) == [("ghost", "pending")]


def test_a_member_cannot_be_invited_and_a_name_must_be_a_username(world):
    owner = world.client("owner")

    member = owner.post(INVITATIONS, {"username": "viewer", "role": "maintainer"}, format="json")
    spaces = owner.post(INVITATIONS, {"username": "two words"}, format="json")
    blank = owner.post(INVITATIONS, {"username": "   "}, format="json")
    role = owner.post(INVITATIONS, {"username": "ghost", "role": "king"}, format="json")

    assert member.status_code == 400
    assert member.json()["errors"]["username"] == ["viewer is already a member of ALPHA."]
    assert [answer.status_code for answer in (spaces, blank, role)] == [400, 400, 400]
    assert "username" in spaces.json()["errors"]
    assert "username" in blank.json()["errors"]
    assert "role" in role.json()["errors"]
    assert not Invitation.objects.exists()


def test_accepting_keeps_the_role_of_someone_already_a_member(world, newcomer):
    world.client("owner").post(INVITATIONS, {"username": "newcomer", "role": "viewer"}, format="json")
    world.client("staff").post(
        "/api/v1/projects/ALPHA/members/", {"user": "newcomer", "role": "maintainer"}, format="json"
    )

    accepted = world.client("newcomer").post(f"{RECEIVED}ALPHA/accept/")

    assert (accepted.status_code, accepted.json()["role"]) == (200, "maintainer")
    assert Membership.objects.get(project=world.project, user=newcomer).role == "maintainer"


def test_owners_direct_additions_are_refused_and_point_to_invitations(world, newcomer):
    answer = world.client("owner").post(
        "/api/v1/projects/ALPHA/members/", {"user": "newcomer", "role": "member"}, format="json"
    )

    assert answer.status_code == 403
    assert "invitations/" in answer.json()["detail"]
    assert not Membership.objects.filter(user=newcomer).exists()


def test_someone_elses_invitation_is_not_found_like_one_that_does_not_exist(world, newcomer):
    world.client("owner").post(INVITATIONS, {"username": "newcomer"}, format="json")

    for who in ("outsider", "viewer", "owner", "staff"):
        client = world.client(who)
        for action in ("accept", "decline"):
            theirs = client.post(f"{RECEIVED}ALPHA/{action}/")
            nothing = client.post(f"{RECEIVED}NOPE/{action}/")
            assert (theirs.status_code, theirs.content) == (404, nothing.content), (who, action)
        assert client.get(RECEIVED).json() == []
    assert Invitation.objects.get().status == "pending"
    assert Membership.objects.filter(user__username="outsider", project=world.project).count() == 0


def test_anonymous_requests_are_refused(world):
    anonymous = world.client("anonymous")

    assert anonymous.get(RECEIVED).status_code == 401
    assert anonymous.post(f"{RECEIVED}ALPHA/accept/").status_code == 401


def _queries(client: Any, url: str, rows: int) -> int:
    client.get(url)  # warm-up: the token's last use is written once a minute at most
    with CaptureQueriesContext(connection) as captured:
        assert len(client.get(url).json()) == rows
    return len(captured.captured_queries) - authentication_queries()


@pytest.mark.parametrize("rows", [1, 30])
def test_invitation_lists_cost_a_fixed_number_of_queries(world, newcomer, rows):
    inviter = world.users["owner"]
    for number in range(rows - 1):
        invitation_create(project=world.project, username=f"guest{number}", role="member", invited_by=inviter)
    for project in (world.project, world.other):
        invitation_create(project=project, username="newcomer", role="member", invited_by=inviter)

    # After authentication. The owner's: the project in the URL, the owner's role, the page with inviters
    # joined.
    assert _queries(world.client("owner"), INVITATIONS, rows) == 3
    # The invitee's: the page with projects and inviters joined.
    assert _queries(world.client("newcomer"), RECEIVED, 2) == 1
