"""Tasks through the API: create, change, assign, transition, dependencies, history and filters."""

from __future__ import annotations

import datetime

import pytest
from rest_framework.test import APIClient

from tasks.models import Task, TaskDependency, TaskEvent

pytestmark = pytest.mark.django_db


def test_a_task_is_created_with_its_relations_through_the_service(world):
    body = {
        "project": "alpha",
        "title": "Ship the API",
        "priority": 3,
        "assignee": "member",
        "parent": "ALPHA-1",
        "depends_on": ["ALPHA-2"],
        "due_date": "2027-01-15",
        "estimate_hours": "6.5",
        "status": "backlog",
    }

    response = world.client("maintainer").post("/api/v1/tasks/", body, format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    assert (data["key"], data["assignee"], data["reporter"], data["parent"]) == (
        "ALPHA-3",
        "member",
        "maintainer",
        "ALPHA-1",
    )
    assert (data["depends_on"], data["status"], data["estimate_hours"]) == (["ALPHA-2"], "backlog", "6.50")
    kinds = set(TaskEvent.objects.filter(task__number=3).values_list("kind", "source"))
    assert kinds == {("created", "api"), ("dependency_added", "api")}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"project": "ALPHA"}, "title"),
        ({"project": "NOPE", "title": "x"}, "project"),
        ({"project": "BETA", "title": "x"}, "project"),  # exists, but not for this user
        ({"project": "ALPHA", "title": "x", "assignee": "viewer"}, "assignee"),
        ({"project": "ALPHA", "title": "x", "assignee": "outsider"}, "assignee"),
        ({"project": "ALPHA", "title": "x", "parent": "BETA-1"}, "parent"),
        ({"project": "ALPHA", "title": "x", "parent": "not a key"}, "parent"),
        ({"project": "ALPHA", "title": "x", "priority": 9}, "priority"),
        ({"project": "ALPHA", "title": "x", "due_date": "tomorrow"}, "due_date"),
        ({"project": "ALPHA", "title": "x", "number": 7}, "number"),
        ({"project": "ALPHA", "title": "x", "closed_at": "2026-01-01T00:00:00Z"}, "closed_at"),
    ],
)
def test_invalid_tasks_are_refused_and_nothing_is_written(world, body, field):
    response = world.client("member").post("/api/v1/tasks/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()
    assert Task.objects.filter(project=world.project).count() == 2
    assert world.project.__class__.objects.get(pk=world.project.pk).last_task_number == 2


def test_a_task_is_found_by_its_key_in_any_case(world):
    assert world.client("viewer").get("/api/v1/tasks/alpha-1/").json()["title"] == "First"
    assert world.client("viewer").get("/api/v1/tasks/ALPHA-99/").status_code == 404


def test_update_and_assign_write_one_event_each(world):
    response = world.client("member").patch(
        "/api/v1/tasks/ALPHA-1/", {"title": "Renamed", "assignee": "maintainer"}, format="json"
    )

    assert response.status_code == 200
    assert (response.json()["title"], response.json()["assignee"]) == ("Renamed", "maintainer")
    assert sorted(
        TaskEvent.objects.filter(kind__in=["updated", "assigned"]).values_list("kind", flat=True)
    ) == [
        "assigned",
        "updated",
    ]


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"status": "done"}, "transition"),
        ({"project": "BETA"}, "stays in its project"),
        ({"depends_on": ["ALPHA-2"]}, "dependencies"),
        ({"reporter": "viewer"}, "read-only"),
        ({"bogus": 1}, "Unknown field"),
    ],
)
def test_fields_owned_elsewhere_are_refused_not_ignored(world, body, hint):
    response = world.client("member").patch("/api/v1/tasks/ALPHA-1/", body, format="json")

    assert response.status_code == 400
    (field,) = body
    assert hint in response.json()["errors"][field][0]
    assert Task.objects.get(pk=world.objects["task"].pk).status == "todo"


def test_transitions_go_through_the_service_and_respect_dependencies(world):
    client = world.client("member")
    client.post("/api/v1/tasks/ALPHA-1/dependencies/", {"depends_on": "ALPHA-2"}, format="json")

    blocked = client.post("/api/v1/tasks/ALPHA-1/transition/", {"status": "done"}, format="json")
    client.post("/api/v1/tasks/ALPHA-2/transition/", {"status": "done", "note": "shipped"}, format="json")
    done = client.post("/api/v1/tasks/ALPHA-1/transition/", {"status": "done"}, format="json")
    bad = client.post("/api/v1/tasks/ALPHA-1/transition/", {"status": "finished"}, format="json")

    assert blocked.status_code == 400
    assert "waits on ALPHA-2 (To do)" in blocked.json()["errors"]["status"][0]
    assert (done.status_code, done.json()["status"]) == (200, "done")
    assert done.json()["closed_at"] is not None
    assert bad.status_code == 400
    assert "status" in bad.json()["errors"]
    event = TaskEvent.objects.filter(task__number=2, kind="status_changed").get()
    assert (event.source, event.actor.username, event.data) == ("api", "member", {"note": "shipped"})


def test_dependencies_are_listed_added_refused_in_cycles_and_removed(world):
    client = world.client("member")

    added = client.post("/api/v1/tasks/ALPHA-1/dependencies/", {"depends_on": "ALPHA-2"}, format="json")
    cycle = client.post("/api/v1/tasks/ALPHA-2/dependencies/", {"depends_on": "ALPHA-1"}, format="json")
    listed = client.get("/api/v1/tasks/ALPHA-1/dependencies/").json()
    removed = client.delete("/api/v1/tasks/ALPHA-1/dependencies/ALPHA-2/")
    missing = client.delete("/api/v1/tasks/ALPHA-1/dependencies/ALPHA-77/")

    assert added.status_code == 201
    assert [row["key"] for row in added.json()] == ["ALPHA-2"]
    assert cycle.status_code == 400
    assert "already waits on" in cycle.json()["errors"]["depends_on"][0]
    assert [row["key"] for row in listed] == ["ALPHA-2"]
    assert removed.status_code == 204
    assert missing.status_code == 404
    assert not TaskDependency.objects.exists()


def test_history_lists_events_newest_first(world):
    client = world.client("member")
    client.post("/api/v1/tasks/ALPHA-1/transition/", {"status": "in_progress"}, format="json")
    client.post("/api/v1/tasks/ALPHA-1/transition/", {"status": "in_review"}, format="json")

    events = client.get("/api/v1/tasks/ALPHA-1/history/").json()["results"]

    assert [(e["kind"], e["to_status"]) for e in events] == [
        ("status_changed", "in_review"),
        ("status_changed", "in_progress"),
        ("created", "todo"),
    ]
    assert events[0]["actor"] == "member"


def test_task_filters_search_and_ordering(world):
    client = world.client("member")
    client.patch("/api/v1/tasks/ALPHA-2/", {"assignee": "member", "priority": 4}, format="json")
    client.patch(
        "/api/v1/tasks/ALPHA-1/",
        {"due_date": str(datetime.date.today() - datetime.timedelta(days=3)), "description": "needle"},
        format="json",
    )
    client.post("/api/v1/tasks/ALPHA-1/transition/", {"status": "cancelled"}, format="json")

    def keys(**params):
        response = client.get("/api/v1/tasks/", params)
        assert response.status_code == 200, response.json()
        return [row["key"] for row in response.json()["results"]]

    assert keys(assignee="me") == ["ALPHA-2"]
    assert keys(assignee="none", project="ALPHA") == ["ALPHA-1"]
    assert keys(is_open="true", project="alpha") == ["ALPHA-2"]
    assert keys(status=["cancelled", "done"]) == ["ALPHA-1"]
    assert keys(priority=4) == ["ALPHA-2"]
    assert keys(search="needle") == ["ALPHA-1"]
    assert keys(due_before=str(datetime.date.today())) == ["ALPHA-1"]
    assert keys(ordering="-priority", project="ALPHA") == ["ALPHA-2", "ALPHA-1"]
    assert keys(project="BETA") == []  # not a member: as if it did not exist
    bad = client.get("/api/v1/tasks/", {"status": "sleeping"})
    assert bad.status_code == 400
    assert "status" in bad.json()["errors"]


@pytest.mark.parametrize("path", ["/api/v1/tasks/ALPHA-01/", "/api/v1/tasks/ALPHA-01/commits/"])
def test_a_malformed_task_number_is_authenticated_first_then_not_found(world, path):
    assert APIClient().get(path).status_code == 401
    assert world.client("member").get(path).status_code == 404
