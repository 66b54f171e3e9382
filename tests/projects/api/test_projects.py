"""Projects, members, the summary, /projects and /dashboard through the API."""

from __future__ import annotations

import pytest

from projects.models import Membership, Project
from tasks.models import TaskEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_post_projects_creates_a_project_with_a_derived_key(world):
    client = world.client("member")

    first = client.post("/projects", {"name": "Test Project"}, format="json")
    second = client.post("/projects", {"name": "Test Project"}, format="json")

    assert (first.status_code, second.status_code) == (201, 201)
    assert (first.json()["key"], second.json()["key"]) == ("TP", "TP2")
    assert Membership.objects.get(project__key="TP").role == "owner"


def test_a_project_key_can_be_chosen_but_not_changed(world):
    client = world.client("owner")

    created = client.post("/api/v1/projects/", {"name": "Gamma", "key": "GAMMA"}, format="json")
    renamed = client.patch("/api/v1/projects/GAMMA/", {"key": "DELTA", "name": "Gamma 2"}, format="json")

    assert created.status_code == 201
    assert renamed.status_code == 400
    assert "cannot change" in renamed.json()["errors"]["key"][0]
    assert Project.objects.get(key="GAMMA").name == "Gamma"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X", "key": "a"}, "key"),
        ({"name": "X", "key": "ALPHA"}, "key"),
        ({"name": ""}, "name"),
        ({"name": "X", "status": "sleeping"}, "status"),
        ({"name": "X", "start_date": "2026-05-01", "target_date": "2026-04-01"}, "non_field_errors"),
        ({"name": "X", "last_task_number": 99}, "last_task_number"),
    ],
)
def test_invalid_projects_are_refused_field_by_field(world, body, field):
    response = world.client("member").post("/api/v1/projects/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert Project.objects.count() == 2


def test_owners_change_and_archive_their_project(world):
    response = world.client("owner").patch(
        "/api/v1/projects/alpha/", {"status": "archived", "target_date": "2027-01-31"}, format="json"
    )

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["role"]) == ("archived", "owner")
    world.project.refresh_from_db()
    assert (world.project.status, str(world.project.target_date)) == ("archived", "2027-01-31")


def test_project_list_filters_searches_orders_and_pages(world):
    client = world.client("staff")
    for name in ("Apollo", "Zephyr"):
        client.post("/api/v1/projects/", {"name": name, "status": "planning"}, format="json")

    planning = client.get("/api/v1/projects/", {"status": "planning"}).json()
    found = client.get("/api/v1/projects/", {"search": "zeph"}).json()
    ordered = client.get("/api/v1/projects/", {"ordering": "-name"}).json()
    page = client.get("/api/v1/projects/", {"page_size": 1, "page": 2}).json()

    assert {row["name"] for row in planning["results"]} == {"Apollo", "Zephyr"}
    assert [row["name"] for row in found["results"]] == ["Zephyr"]
    assert ordered["results"][0]["name"] == "Zephyr"
    assert (page["count"], len(page["results"])) == (4, 1)
    assert page["next"]
    assert page["previous"]


def test_page_size_is_capped(world):
    response = world.client("staff").get("/api/v1/tasks/", {"page_size": 100000})

    assert response.status_code == 200
    assert "page_size=100000" not in (response.json()["next"] or "")
    assert len(response.json()["results"]) <= 200


def test_summary_counts_progress_and_activity_and_follows_changes(world, django_capture_on_commit_callbacks):
    client = world.client("member")
    before = client.get("/api/v1/projects/ALPHA/summary/").json()

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/api/v1/tasks/ALPHA-1/transition/", {"status": "done"}, format="json")
    after = client.get("/api/v1/projects/ALPHA/summary/").json()

    assert (before["tasks_total"], before["tasks_done"], before["progress"]) == (2, 0, 0.0)
    assert before["repositories"] == 1
    assert before["commits"] == 1
    assert (after["tasks_done"], after["tasks_open"], after["progress"]) == (1, 1, 0.5)
    assert after["tasks_by_status"]["done"] == 1
    latest = after["recent_events"][0]
    assert (latest["task"], latest["kind"], latest["source"]) == ("ALPHA-1", "status_changed", "api")
    assert after["recent_commits"][0]["sha"] == world.objects["commit"].sha


def test_staff_add_members_directly_and_maintainers_change_and_list_them(world):
    client = world.client("maintainer")
    staff = world.client("staff")

    UserFactory(username="newcomer")

    added = staff.post(
        "/api/v1/projects/ALPHA/members/", {"user": "newcomer", "role": "viewer"}, format="json"
    )
    changed = client.patch("/api/v1/projects/ALPHA/members/newcomer/", {"role": "member"}, format="json")
    unknown = staff.post(
        "/api/v1/projects/ALPHA/members/", {"user": "nobody", "role": "viewer"}, format="json"
    )
    bad_role = client.patch("/api/v1/projects/ALPHA/members/newcomer/", {"role": "king"}, format="json")
    listed = client.get("/api/v1/projects/ALPHA/members/", {"role": "member"}).json()

    assert (added.status_code, added.json()["role"]) == (201, "viewer")
    assert (changed.status_code, changed.json()["role"]) == (200, "member")
    assert unknown.status_code == 400
    assert "user" in unknown.json()["errors"]
    assert bad_role.status_code == 400
    assert "role" in bad_role.json()["errors"]
    assert [row["user"] for row in listed] == ["member", "newcomer"]


def test_dashboard_is_a_page_for_people_and_json_for_programs(world, client):
    anonymous = client.get("/dashboard")
    client.force_login(world.users["viewer"])
    page = client.get("/dashboard")
    data = world.client("viewer").get("/dashboard", HTTP_ACCEPT="application/json")
    api_anonymous = world.client("anonymous").get("/dashboard", HTTP_ACCEPT="application/json")

    assert (anonymous.status_code, anonymous["Location"]) == (302, "/accounts/login/?next=/dashboard")
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    assert b"Alpha" in page.content
    assert b"Beta" not in page.content
    assert data.json() == [
        {
            "id": world.project.pk,
            "key": "ALPHA",
            "name": "Alpha",
            "status": "active",
            "health_level": None,
            "health_score": None,
            "tasks_total": 2,
            "tasks_open": 2,
            "tasks_done": 0,
            "progress": 0.0,
        }
    ]
    assert api_anonymous.status_code == 401


def test_writes_record_their_source_and_actor(world):
    world.client("member").patch("/api/v1/tasks/ALPHA-1/", {"title": "Renamed"}, format="json")

    event = TaskEvent.objects.filter(kind="updated").get()
    assert (event.source, event.actor, event.data) == (
        "api",
        world.users["member"],
        {"title": {"from": "First", "to": "Renamed"}},
    )


def test_maintainers_set_the_commit_grammar_and_bad_settings_are_field_errors(world):
    client = world.client("maintainer")
    url = "/api/v1/projects/ALPHA/"

    bad = client.patch(
        url, {"commit_close_keywords": "fixes c++", "commit_status_tags": {"review": "nope"}}, format="json"
    )
    good = client.patch(
        url,
        {"commit_close_keywords": "fixes, done", "commit_status_tags": {"review": "in_review"}},
        format="json",
    )
    refused = world.client("member").patch(url, {"commit_automation": False}, format="json")

    assert bad.status_code == 400
    assert bad.json()["errors"] == {
        "commit_close_keywords": ["'c++' is not a keyword: use letters (and hyphens) only."],
        "commit_status_tags": [
            "#review -> 'nope': tags are letters, digits, _ or -, and 'nope' must be a task status."
        ],
    }
    assert good.status_code == 200
    assert (good.json()["commit_close_keywords"], good.json()["commit_status_tags"]) == (
        "fixes, done",
        {"review": "in_review"},
    )
    assert refused.status_code == 403
    world.project.refresh_from_db()
    assert world.project.commit_automation is True


def test_a_project_is_created_with_its_commit_grammar(world):
    client = world.client("member")

    created = client.post(
        "/api/v1/projects/",
        {"name": "Grammar", "key": "GRAM", "commit_close_keywords": "ships", "commit_time_logging": False},
        format="json",
    )
    refused = client.post(
        "/api/v1/projects/", {"name": "Bad", "key": "BAD", "commit_status_tags": ["review"]}, format="json"
    )

    assert created.status_code == 201
    assert (created.json()["commit_close_keywords"], created.json()["commit_time_logging"]) == (
        "ships",
        False,
    )
    assert refused.status_code == 400
    assert list(refused.json()["errors"]) == ["commit_status_tags"]
    assert not Project.objects.filter(key="BAD").exists()
