"""Who may do what, route by route: every role, a non-member, anonymous and a read-only token.

A non-member gets 404 for the project's objects (they do not exist for them), lists included; viewers
and read-only tokens may read but not write; maintainers and owners also manage the project, its members
and repositories; staff may do everything. A refused request changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from apm.models import ApiToken
from projects.models import Invitation, Membership, Project
from projects.services import invitation_create
from reports.exports import export_run
from reports.models import ExportJob
from repos.models import IngestionRun, Repository
from tasks.models import TaskDependency, TaskEvent
from tasks.services import task_dependency_add
from tests.factories import MembershipFactory, TaskFactory, UserFactory
from webhooks.models import WebhookDelivery, WebhookSubscription

pytestmark = pytest.mark.django_db

WHO = ("staff", "owner", "maintainer", "member", "viewer", "read-only token", "outsider", "anonymous")

# (route id, method, path, body, what it needs: read | write | admin)
ROUTES: list[tuple[str, str, str, dict[str, Any] | None, str]] = [
    ("project-detail", "get", "/api/v1/projects/ALPHA/", None, "read"),
    ("project-summary", "get", "/api/v1/projects/ALPHA/summary/", None, "read"),
    ("project-progress", "get", "/api/v1/projects/ALPHA/progress/", None, "read"),
    ("project-health", "get", "/api/v1/projects/ALPHA/health/", None, "read"),
    ("project-priorities", "get", "/api/v1/projects/ALPHA/priorities/", None, "read"),
    ("project-burndown", "get", "/api/v1/projects/ALPHA/burndown/", None, "read"),
    ("project-update", "patch", "/api/v1/projects/ALPHA/", {"name": "Renamed"}, "admin"),
    ("project-delete", "delete", "/api/v1/projects/ALPHA/", None, "owner"),
    ("member-list", "get", "/api/v1/projects/ALPHA/members/", None, "read"),
    ("member-detail", "get", "/api/v1/projects/ALPHA/members/extra/", None, "read"),
    (
        "member-add",
        "post",
        "/api/v1/projects/ALPHA/members/",
        {"user": "newcomer", "role": "member"},
        "staff",
    ),
    ("member-role", "patch", "/api/v1/projects/ALPHA/members/extra/", {"role": "viewer"}, "admin"),
    ("member-remove", "delete", "/api/v1/projects/ALPHA/members/extra/", None, "admin"),
    # Invitations: owners invite and revoke (people join by accepting); staff add members directly.
    ("invitation-list", "get", "/api/v1/projects/ALPHA/invitations/", None, "owner-read"),
    (
        "invitation-create",
        "post",
        "/api/v1/projects/ALPHA/invitations/",
        {"username": "newcomer", "role": "member"},
        "owner",
    ),
    ("invitation-revoke", "delete", "/api/v1/projects/ALPHA/invitations/invited/", None, "owner"),
    ("task-detail", "get", "/api/v1/tasks/ALPHA-1/", None, "read"),
    ("task-history", "get", "/api/v1/tasks/ALPHA-1/history/", None, "read"),
    ("task-commits", "get", "/api/v1/tasks/ALPHA-1/commits/", None, "read"),
    ("task-dependencies", "get", "/api/v1/tasks/ALPHA-1/dependencies/", None, "read"),
    ("task-create", "post", "/api/v1/tasks/", {"project": "ALPHA", "title": "New"}, "write"),
    ("task-update", "patch", "/api/v1/tasks/ALPHA-1/", {"title": "Renamed"}, "write"),
    ("task-assign", "patch", "/api/v1/tasks/ALPHA-1/", {"assignee": "member"}, "write"),
    ("task-transition", "post", "/api/v1/tasks/ALPHA-1/transition/", {"status": "in_progress"}, "write"),
    (
        "task-dependency-add",
        "post",
        "/api/v1/tasks/ALPHA-1/dependencies/",
        {"depends_on": "ALPHA-3"},
        "write",
    ),
    ("task-dependency-remove", "delete", "/api/v1/tasks/ALPHA-2/dependencies/ALPHA-1/", None, "write"),
    ("repository-detail", "get", "/api/v1/repositories/{repository}/", None, "read"),
    (
        "repository-create",
        "post",
        "/api/v1/repositories/",
        {"project": "ALPHA", "source": "https://git.example.com/team/new.git"},
        "admin",
    ),
    ("repository-update", "patch", "/api/v1/repositories/{repository}/", {"name": "renamed"}, "admin"),
    ("repository-ingest", "post", "/api/v1/repositories/{repository}/ingest/", {}, "write"),
    ("repository-delete", "delete", "/api/v1/repositories/{repository}/", None, "admin"),
    ("repository-webhook-secret", "post", "/api/v1/repositories/{repository}/webhook-secret/", None, "admin"),
    ("ingestion-run-detail", "get", "/api/v1/ingestion-runs/{run}/", None, "read"),
    ("commit-detail", "get", "/api/v1/commits/{commit}/", None, "read"),
    ("file-change-detail", "get", "/api/v1/file-changes/{file_change}/", None, "read"),
    ("file-detail", "get", "/api/v1/files/{file}/", None, "read"),
    # Code analytics (repos.api.analytics): any member may read them.
    ("project-hotspots", "get", "/api/v1/projects/ALPHA/hotspots/", None, "read"),
    ("project-coupling", "get", "/api/v1/projects/ALPHA/coupling/", None, "read"),
    ("project-contributors", "get", "/api/v1/projects/ALPHA/contributors/", None, "read"),
    # Outgoing webhooks: managed by owners and maintainers only, reading included (URLs are private).
    ("webhook-list", "get", "/api/v1/projects/ALPHA/webhooks/", None, "manage-read"),
    ("webhook-detail", "get", "/api/v1/projects/ALPHA/webhooks/{webhook}/", None, "manage-read"),
    (
        "webhook-deliveries",
        "get",
        "/api/v1/projects/ALPHA/webhooks/{webhook}/deliveries/",
        None,
        "manage-read",
    ),
    (
        "webhook-create",
        "post",
        "/api/v1/projects/ALPHA/webhooks/",
        {"url": "https://93.184.215.14/hook", "events": ["task.created"]},
        "admin",
    ),
    ("webhook-update", "patch", "/api/v1/projects/ALPHA/webhooks/{webhook}/", {"is_active": False}, "admin"),
    ("webhook-delete", "delete", "/api/v1/projects/ALPHA/webhooks/{webhook}/", None, "admin"),
    (
        "webhook-rotate-secret",
        "post",
        "/api/v1/projects/ALPHA/webhooks/{webhook}/rotate-secret/",
        None,
        "admin",
    ),
    ("webhook-ping", "post", "/api/v1/projects/ALPHA/webhooks/{webhook}/ping/", None, "admin"),
    # Exports: every member follows and downloads them; members who write request them.
    ("export-list", "get", "/api/v1/projects/ALPHA/exports/", None, "read"),
    ("export-detail", "get", "/api/v1/projects/ALPHA/exports/{export}/", None, "read"),
    ("export-download", "get", "/api/v1/projects/ALPHA/exports/{export}/download/", None, "read"),
    ("export-create", "post", "/api/v1/projects/ALPHA/exports/", {"kind": "tasks_csv"}, "write"),
]

ALLOWED = {
    "read": {"staff", "owner", "maintainer", "member", "viewer", "read-only token"},
    "write": {"staff", "owner", "maintainer", "member"},
    "admin": {"staff", "owner", "maintainer"},
    # Reading what only managers see: an owner's read-only token may read it.
    "manage-read": {"staff", "owner", "maintainer", "read-only token"},
    # Invitations are the owners' (an owner's read-only token may list them); direct additions staff's.
    "owner-read": {"staff", "owner", "read-only token"},
    "owner": {"staff", "owner"},
    "staff": {"staff"},
}
# Creations name their project in the body: to a non-member that project does not exist, reported as
# for any unknown key (a field error), never as "forbidden".
BODY_REFERENCES = {"task-create", "repository-create"}
# Routes that answer a file instead of JSON when they succeed.
FILE_ROUTES = {"export-download": "text/csv; charset=utf-8"}


def expected_status(route: str, method: str, needs: str, who: str) -> set[int]:
    if who == "anonymous":
        return {401}
    if who == "outsider":
        return {400} if route in BODY_REFERENCES else {404}
    if who in ALLOWED[needs]:
        return {200, 201, 202, 204}
    return {403}


def client_for(world: Any, who: str) -> Any:
    if who == "read-only token":
        return world.client("owner", scope=ApiToken.Scope.READ)
    return world.client(who)


def snapshot(world: Any) -> dict[str, Any]:
    """Everything a write in the matrix could change."""
    project = Project.objects.get(pk=world.project.pk)
    return {
        "project": (project.name, project.last_task_number),
        "events": TaskEvent.objects.count(),
        "dependencies": TaskDependency.objects.count(),
        "memberships": sorted(Membership.objects.values_list("user__username", "role")),
        "repositories": sorted(Repository.objects.values_list("name", "webhook_secret")),
        "runs": IngestionRun.objects.count(),
        "webhooks": sorted(WebhookSubscription.objects.values_list("url", "is_active", "secret")),
        "webhook deliveries": WebhookDelivery.objects.count(),
        "exports": ExportJob.objects.count(),
        "invitations": sorted(Invitation.objects.values_list("username", "role", "status")),
    }


@pytest.fixture
def matrix_world(world: Any) -> Any:
    UserFactory(username="newcomer")
    MembershipFactory(project=world.project, user=UserFactory(username="extra"), role=Membership.Role.MEMBER)
    invitation_create(
        project=world.project, username="invited", role="member", invited_by=world.users["owner"]
    )
    # ALPHA-2 waits on ALPHA-1, for the removal route.
    task_dependency_add(task=world.objects["blocker"], depends_on=world.objects["task"], source="system")
    TaskFactory(project=world.project, title="Third")  # ALPHA-3, for the dependency route
    # A webhook whose target is refused at send time, so the ping route answers without any network.
    world.objects["webhook"] = WebhookSubscription.objects.create(
        project=world.project, url="https://127.0.0.1:9/hook", events=["task.created"], secret="s"
    )
    world.objects["export"] = export_run(
        job_id=ExportJob.objects.create(project=world.project, kind=ExportJob.Kind.TASKS_CSV).pk
    )
    return world


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(("route", "method", "path", "body", "needs"), ROUTES, ids=[r[0] for r in ROUTES])
def test_route_answers_by_role(matrix_world, route, method, path, body, needs, who):  # noqa: PLR0917
    world = matrix_world
    url = path.format(**{name: obj.pk for name, obj in world.objects.items()})
    before = snapshot(world)

    response = getattr(client_for(world, who), method)(url, body, format="json")

    assert response.status_code in expected_status(route, method, needs, who), (who, response.content[:300])
    if response.status_code in {200, 201, 202} and route in FILE_ROUTES:
        assert response["Content-Type"] == FILE_ROUTES[route]
    else:
        assert response.status_code == 204 or response["Content-Type"].startswith("application/json")
    if response.status_code >= 400:
        assert snapshot(world) == before, "a refused request changed something"
        assert "detail" in response.json()
    if response.status_code == 400:
        # The same words as for a project that does not exist at all: nothing leaks.
        assert response.json()["errors"]["project"] == ["Object with key=ALPHA does not exist."]


LISTS = [
    ("/api/v1/projects/", "key", "ALPHA"),
    ("/projects", "key", "ALPHA"),
    ("/api/v1/tasks/", "key", "ALPHA-1"),
    ("/api/v1/repositories/", "name", "alpha-repo"),
    ("/api/v1/ingestion-runs/", "id", "{run}"),
    ("/api/v1/commits/", "id", "{commit}"),
    ("/api/v1/file-changes/", "id", "{file_change}"),
    ("/api/v1/files/", "id", "{file}"),
]


def listed(response: Any, field: str) -> set[str]:
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return {str(row[field]) for row in rows}


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(("path", "field", "alpha_value"), LISTS, ids=[path for path, *_ in LISTS])
def test_lists_hold_only_the_projects_one_belongs_to(world, path, field, alpha_value, who):
    alpha = alpha_value.format(**{name: obj.pk for name, obj in world.objects.items()})

    response = client_for(world, who).get(path)

    if who == "anonymous":
        assert response.status_code == 401
        return
    assert response.status_code == 200
    values = listed(response, field)
    if who == "outsider":
        assert alpha not in values
        assert values, "the outsider still sees their own project's rows"
    else:
        assert alpha in values


def test_dashboard_lists_only_ones_projects(world):
    keys = {
        row["key"] for row in world.client("viewer").get("/dashboard", HTTP_ACCEPT="application/json").json()
    }
    outsider = {
        row["key"]
        for row in world.client("outsider").get("/dashboard", HTTP_ACCEPT="application/json").json()
    }
    staff = {
        row["key"] for row in world.client("staff").get("/dashboard", HTTP_ACCEPT="application/json").json()
    }

    assert keys == {"ALPHA"}
    assert outsider == {"BETA"}
    assert staff == {"ALPHA", "BETA"}


def test_members_may_leave_but_not_remove_others(world):
    member = world.client("member")

    assert member.delete("/api/v1/projects/ALPHA/members/viewer/").status_code == 403
    assert member.delete("/api/v1/projects/ALPHA/members/member/").status_code == 204
    assert not Membership.objects.filter(project=world.project, user__username="member").exists()


def test_the_last_owner_cannot_leave(world):
    response = world.client("owner").delete("/api/v1/projects/ALPHA/members/owner/")

    assert response.status_code == 400
    assert "last owner" in response.json()["errors"]["role"][0]


def test_a_new_project_belongs_to_its_creator(world):
    response = world.client("viewer").post("/api/v1/projects/", {"name": "Viewer's own"}, format="json")

    assert response.status_code == 201
    assert response.json()["role"] == "owner"
    assert Membership.objects.get(project__key=response.json()["key"]).user == world.users["viewer"]


def test_only_owners_make_owners_or_change_them(world):
    maintainer = world.client("maintainer")

    promote_self = maintainer.patch(
        "/api/v1/projects/ALPHA/members/maintainer/", {"role": "owner"}, format="json"
    )
    demote_owner = maintainer.patch(
        "/api/v1/projects/ALPHA/members/owner/", {"role": "viewer"}, format="json"
    )
    remove_owner = maintainer.delete("/api/v1/projects/ALPHA/members/owner/")
    add_owner = maintainer.post(
        "/api/v1/projects/ALPHA/members/", {"user": "outsider", "role": "owner"}, format="json"
    )
    by_owner = world.client("owner").patch(
        "/api/v1/projects/ALPHA/members/maintainer/", {"role": "owner"}, format="json"
    )

    assert [r.status_code for r in (promote_self, demote_owner, remove_owner, add_owner)] == [403] * 4
    assert by_owner.status_code == 200
    roles = dict(Membership.objects.filter(project=world.project).values_list("user__username", "role"))
    assert (roles["owner"], roles["maintainer"], "outsider" in roles) == ("owner", "owner", False)
