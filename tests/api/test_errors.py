"""One error shape for the whole API: ``{"detail": "...", "errors": {field: [...]}}``, always JSON.

``detail`` is one sentence; ``errors`` is there for invalid input only. Django's own 404 and 500 under
``/api/`` answer in the same shape (the suite runs with DEBUG=False, as production does).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tasks.models import Task, TaskDependency

pytestmark = pytest.mark.django_db


def assert_error(response: Any, status: int) -> dict[str, Any]:
    """The response is a JSON error of ``status`` with a one-sentence ``detail``; return its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].split(";")[0] == "application/json"
    assert b"<html" not in response.content.lower()
    body = response.json()
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert set(body) <= {"detail", "errors"}
    return body


def assert_invalid(response: Any) -> dict[str, list[str]]:
    """A 400 for invalid input: ``detail`` is "Invalid input." and ``errors`` maps fields to strings."""
    body = assert_error(response, 400)
    assert body["detail"] == "Invalid input."
    errors = body["errors"]
    assert errors
    for field, messages in errors.items():
        assert isinstance(field, str)
        assert isinstance(messages, list)
        assert messages
        assert all(isinstance(message, str) and message for message in messages)
    return errors


def test_the_suite_runs_with_debug_off():
    assert settings.DEBUG is False


# --- 400: invalid input -------------------------------------------------------------------------------


def test_a_serializer_error_names_the_missing_field(world):
    response = world.client("member").post("/api/v1/tasks/", {"project": "ALPHA"}, format="json")

    errors = assert_invalid(response)
    assert set(errors) == {"title"}
    assert "required" in errors["title"][0].lower()
    assert Task.objects.filter(project=world.project).count() == 2


def test_several_invalid_fields_are_reported_together(world):
    response = world.client("member").post(
        "/api/v1/tasks/", {"project": "ALPHA", "title": "", "priority": "urgent-ish"}, format="json"
    )

    errors = assert_invalid(response)
    assert {"title", "priority"} <= set(errors)


def test_status_is_refused_on_update_with_a_hint_to_transition(world):
    response = world.client("member").patch("/api/v1/tasks/ALPHA-1/", {"status": "done"}, format="json")

    errors = assert_invalid(response)
    assert set(errors) == {"status"}
    assert "transition" in errors["status"][0]
    task = world.objects["task"]
    task.refresh_from_db()
    assert task.status == Task.Status.TODO


def test_an_unknown_field_is_refused(world):
    response = world.client("member").patch(
        "/api/v1/tasks/ALPHA-1/", {"title": "Renamed", "bogus": 1}, format="json"
    )

    errors = assert_invalid(response)
    assert errors == {"bogus": ["Unknown field."]}
    task = world.objects["task"]
    task.refresh_from_db()
    assert task.title == "First"


def test_a_read_only_field_is_refused_with_a_message(world):
    response = world.client("member").patch("/api/v1/tasks/ALPHA-1/", {"closed_at": None}, format="json")

    errors = assert_invalid(response)
    assert errors == {"closed_at": ["This field is read-only."]}


def test_a_validation_error_from_a_service_is_a_400_on_its_field(world):
    client = world.client("member")
    added = client.post("/api/v1/tasks/ALPHA-1/dependencies/", {"depends_on": "ALPHA-2"}, format="json")
    assert added.status_code == 201, added.content
    assert TaskDependency.objects.filter(
        task=world.objects["task"], depends_on=world.objects["blocker"]
    ).exists()

    response = client.post("/api/v1/tasks/ALPHA-1/transition/", {"status": "done"}, format="json")

    errors = assert_invalid(response)
    assert set(errors) == {"status"}
    assert "ALPHA-2" in errors["status"][0]
    task = world.objects["task"]
    task.refresh_from_db()
    assert task.status == Task.Status.TODO
    assert task.closed_at is None


def test_a_service_error_on_a_dependency_cycle_is_a_400(world):
    client = world.client("member")
    assert client.post("/api/v1/tasks/ALPHA-1/dependencies/", {"depends_on": "ALPHA-2"}).status_code == 201

    response = client.post("/api/v1/tasks/ALPHA-2/dependencies/", {"depends_on": "ALPHA-1"}, format="json")

    errors = assert_invalid(response)
    assert set(errors) == {"depends_on"}
    assert TaskDependency.objects.count() == 1


def test_a_body_that_is_not_an_object_is_a_non_field_error(world):
    response = world.client("member").post("/api/v1/tasks/ALPHA-1/transition/", [1, 2], format="json")

    errors = assert_invalid(response)
    assert set(errors) == {"non_field_errors"}


def test_an_invalid_filter_is_a_400_on_its_parameter(world):
    response = world.client("member").get("/api/v1/tasks/", {"status": "bogus"})

    errors = assert_invalid(response)
    assert set(errors) == {"status"}


def test_malformed_json_is_a_400_in_the_same_shape(world):
    response = world.client("member").post(
        "/api/v1/tasks/", data=b'{"project": "ALPHA",', content_type="application/json"
    )

    body = assert_error(response, 400)
    assert body["detail"] == "Malformed request body."
    assert "JSON parse error" in body["errors"]["non_field_errors"][0]


# --- 401, 403, 404, 405 -------------------------------------------------------------------------------


def test_a_permission_error_has_only_a_detail(world):
    response = world.client("viewer").post("/api/v1/tasks/", {"project": "ALPHA", "title": "New"})

    body = assert_error(response, 403)
    assert set(body) == {"detail"}
    assert "viewer" in body["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope/",
        "/api/v1/",
        "/api/v2/projects/",
        "/api/v1/tasks/not-a-key/",
        "/api/v1/projects/ALPHA/x/",
    ],
)
def test_an_unknown_api_url_is_a_json_404(world, path: str):
    response = world.client("member").get(path)

    body = assert_error(response, 404)
    assert body == {"detail": "Not found."}


def test_an_unknown_api_url_is_json_even_for_a_browser(world):
    response = APIClient().get("/api/v1/nope/", HTTP_ACCEPT="text/html")

    assert assert_error(response, 404) == {"detail": "Not found."}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tasks/ALPHA-999/",
        "/api/v1/tasks/BETA-1/",
        "/api/v1/projects/BETA/",
        "/api/v1/tokens/999999/",
        "/api/v1/tokens/abc/",
        "/api/v1/repositories/abc/",
        "/api/v1/repositories/99999999999999999999999/",
    ],
)
def test_an_object_that_does_not_exist_or_is_not_visible_is_a_json_404(world, path: str):
    response = world.client("member").get(path)

    assert assert_error(response, 404) == {"detail": "Not found."}


def test_a_page_past_the_end_is_a_json_404(world):
    response = world.client("member").get("/api/v1/tasks/", {"page": 999})

    assert assert_error(response, 404) == {"detail": "Invalid page."}


def test_a_method_that_is_not_allowed_is_a_json_405(world):
    response = world.client("owner").put("/api/v1/projects/ALPHA/", {"name": "x"}, format="json")

    body = assert_error(response, 405)
    assert set(body) == {"detail"}
    assert "PUT" in body["detail"]
    assert "GET" in response["Allow"]


def test_put_is_not_offered_on_tasks(world):
    response = world.client("member").put("/api/v1/tasks/ALPHA-1/", {"title": "x"}, format="json")

    assert set(assert_error(response, 405)) == {"detail"}


def test_a_method_not_allowed_on_the_webhook_is_json(world):
    response = APIClient().get("/api/v1/hooks/push/")

    assert set(assert_error(response, 405)) == {"detail"}


def test_an_unacceptable_media_type_is_a_json_406(world):
    response = world.client("member").get("/api/v1/projects/ALPHA/", HTTP_ACCEPT="application/xml")

    body = assert_error(response, 406)
    assert set(body) == {"detail"}


def test_an_unsupported_media_type_is_a_json_415(world):
    response = world.client("member").post("/api/v1/tasks/", data="title=x", content_type="text/plain")

    assert set(assert_error(response, 415)) == {"detail"}


# --- 500 ----------------------------------------------------------------------------------------------


def test_an_unexpected_exception_is_a_json_500(world, monkeypatch):
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("the cache fell over; secret internals")

    monkeypatch.setattr("insights.api.views.project_summary_cached", broken)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {world.tokens['member']}")

    response = client.get("/api/v1/projects/ALPHA/summary/")

    body = assert_error(response, 500)
    assert set(body) == {"detail"}
    assert "secret internals" not in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_an_unexpected_exception_in_a_write_is_a_json_500_and_writes_nothing(world, monkeypatch):
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("tasks.api.views.task_create", broken)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {world.tokens['member']}")

    response = client.post("/api/v1/tasks/", {"project": "ALPHA", "title": "Lost"}, format="json")

    assert set(assert_error(response, 500)) == {"detail"}
    assert not Task.objects.filter(title="Lost").exists()


# --- Every error is JSON ------------------------------------------------------------------------------


# (who, method, path, body, status)
ERRORS: list[tuple[str, str, str, dict[str, Any] | None, int]] = [
    ("anonymous", "get", "/api/v1/projects/", None, 401),
    ("member", "post", "/api/v1/tasks/", {"project": "ALPHA"}, 400),
    ("viewer", "patch", "/api/v1/tasks/ALPHA-1/", {"title": "x"}, 403),
    ("member", "get", "/api/v1/tasks/ALPHA-999/", None, 404),
    ("member", "get", "/api/v1/does-not-exist/", None, 404),
    ("owner", "put", "/api/v1/projects/ALPHA/", {"name": "x"}, 405),
    ("anonymous", "post", "/api/v1/hooks/push/", {"ref": "refs/heads/main"}, 403),
]


@pytest.mark.parametrize("case", ERRORS, ids=[f"{case[-1]}-{case[1]}-{case[2]}" for case in ERRORS])
@pytest.mark.parametrize("accept", ["application/json", "*/*"])
def test_no_error_is_html(world, case: tuple[str, str, str, dict[str, Any] | None, int], accept: str):
    who, method, path, body, status = case
    send = getattr(world.client(who), method)

    response = send(path, body, format="json", HTTP_ACCEPT=accept) if body else send(path, HTTP_ACCEPT=accept)

    assert_error(response, status)


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/tasks/?parent=" + "9" * 30,
        "/api/v1/commits/?repository=" + "9" * 30,
        "/api/v1/file-changes/?commit=-1",
        "/api/v1/files/?repository=abc",
    ],
)
def test_ids_out_of_range_in_filters_are_400(world, url):
    response = world.client("member").get(url)

    assert response.status_code == 400
    assert response.json()["detail"] == "Invalid input."


def test_a_filter_on_another_projects_id_looks_like_one_that_does_not_exist(world):
    client = world.client("outsider")
    theirs = client.get(f"/api/v1/commits/?repository={world.objects['repository'].pk}")
    nowhere = client.get("/api/v1/commits/?repository=999999")

    assert theirs.status_code == nowhere.status_code == 200
    assert theirs.json()["results"] == nowhere.json()["results"] == []
