"""Hostile input gets a 400 (or 404, 413) in the API's error shape, never a 500.

Each case here reached a 500 on PostgreSQL in an outside review's fuzzing run: JSON nested thousands of
levels deep, lone surrogates and NUL characters in strings, dates and cursors past the calendar's edges
once moved to UTC, crafted cursors, bodies over the upload limit, and values the database stores but APM
cannot plan with (negative estimates, year 1 or 9999).
"""

from __future__ import annotations

import base64
import datetime
import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from rest_framework import exceptions as drf_exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from apm.api.exceptions import exception_handler
from apm.api.parsers import MAX_JSON_DEPTH
from projects.models import Project
from projects.services import project_create, project_update
from reports.models import ExportJob
from tasks.models import Task, TaskEvent
from tasks.services import task_create, task_update
from tests.api.test_errors import assert_error, assert_invalid
from tests.factories import WebhookDeliveryFactory, WebhookSubscriptionFactory

pytestmark = pytest.mark.django_db

# One request of every JSON write route that takes a body, as (who sends it, method, path, a valid body).
WRITE_ROUTES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("owner", "post", "/api/v1/projects/", {"name": "Gamma"}),
    ("owner", "patch", "/api/v1/projects/ALPHA/", {"name": "Alpha 2"}),
    ("staff", "post", "/api/v1/projects/ALPHA/members/", {"user": "outsider", "role": "member"}),
    ("owner", "post", "/api/v1/projects/ALPHA/exports/", {"kind": "tasks_csv"}),
    ("owner", "post", "/api/v1/projects/ALPHA/webhooks/", {"url": "https://hooks.example.com/apm"}),
    ("member", "post", "/api/v1/tasks/", {"project": "ALPHA", "title": "New"}),
    ("member", "patch", "/api/v1/tasks/ALPHA-1/", {"title": "Renamed"}),
    ("member", "post", "/api/v1/tasks/ALPHA-1/transition/", {"status": "in_progress"}),
    ("member", "post", "/api/v1/tasks/ALPHA-1/dependencies/", {"depends_on": "ALPHA-2"}),
    (
        "owner",
        "post",
        "/api/v1/repositories/",
        {"project": "ALPHA", "name": "r", "source": "https://g.example.com/r"},
    ),
    ("session", "post", "/api/v1/tokens/", {"name": "ci"}),  # tokens come from a password or a session
]


def client_of(world: Any, who: str) -> APIClient:
    if who != "session":
        return world.client(who)
    client = APIClient()
    client.force_login(world.users["member"])
    return client


def send(client: Any, method: str, path: str, text: str) -> Any:
    """``text`` as the raw JSON body, exactly as written (no re-encoding by the test client)."""
    return getattr(client, method)(path, data=text.encode("utf-8"), content_type="application/json")


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def assert_malformed(response: Any) -> str:
    """A 400 for a body refused as a whole; return its one message."""
    body = assert_error(response, 400)
    assert body["detail"] == "Malformed request body."
    [message] = body["errors"]["non_field_errors"]
    return str(message)


# --- JSON nested too deep ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "method", "path", "valid"), WRITE_ROUTES, ids=[f"{m} {p}" for _, m, p, _ in WRITE_ROUTES]
)
def test_json_nested_thousands_of_levels_deep_is_a_400_on_every_write_route(world, who, method, path, valid):
    field = next(iter(valid))
    text = json.dumps(valid)[:-1] + f', "{field}x": {nested(5000)}}}'

    message = assert_malformed(send(client_of(world, who), method, path, text))

    assert str(MAX_JSON_DEPTH) in message


@pytest.mark.parametrize("inner", ["1", "{}", '"x"'])
def test_json_nested_a_million_levels_deep_is_a_400(world, inner):
    text = '{"project": "ALPHA", "title": ' + nested(1_000_000, inner) + "}"

    message = assert_malformed(send(world.client("member"), "post", "/api/v1/tasks/", text))

    assert "nested" in message
    assert Task.objects.filter(project=world.project).count() == 2


def test_objects_nested_too_deep_are_refused_like_lists(world):
    text = '{"title": ' + '{"a": ' * 200 + "1" + "}" * 200 + "}"

    assert_malformed(send(world.client("member"), "patch", "/api/v1/tasks/ALPHA-1/", text))


def test_brackets_inside_strings_do_not_count_as_nesting(world):
    title = "[" * 300 + "{" * 300
    text = json.dumps({"project": "ALPHA", "title": title[:200]})

    response = send(world.client("member"), "post", "/api/v1/tasks/", text)

    assert response.status_code == 201, response.content
    assert response.json()["title"] == title[:200]


def test_json_at_the_depth_limit_reaches_the_serializer(world):
    # The parser lets it through; the serializer refuses a list where a string belongs, on its field.
    text = '{"project": "ALPHA", "title": ' + nested(MAX_JSON_DEPTH - 1) + "}"

    errors = assert_invalid(send(world.client("member"), "post", "/api/v1/tasks/", text))

    assert set(errors) == {"title"}


# --- lone surrogates -------------------------------------------------------------------------------------


def test_a_lone_surrogate_in_a_choice_field_is_a_400_naming_the_field(world):
    text = '{"status": "\\ud800x"}'

    errors = assert_invalid(send(world.client("member"), "post", "/api/v1/tasks/ALPHA-1/transition/", text))

    assert set(errors) == {"status"}
    assert "surrogate" in errors["status"][0]


def test_a_lone_surrogate_deep_in_a_body_is_named_by_its_path(world):
    text = '{"kind": "tasks_csv", "filters": {"status": ["todo", "\\udfffdone"]}}'

    errors = assert_invalid(send(world.client("member"), "post", "/api/v1/projects/ALPHA/exports/", text))

    assert set(errors) == {"filters.status.1"}
    assert not ExportJob.objects.exists()


def test_a_lone_surrogate_in_a_key_is_a_400(world):
    text = '{"title": "x", "\\ud800": 1}'

    errors = assert_invalid(send(world.client("member"), "patch", "/api/v1/tasks/ALPHA-1/", text))

    assert set(errors) == {"non_field_errors"}
    assert "key" in errors["non_field_errors"][0]


def test_a_surrogate_pair_is_a_character_like_any_other(world):
    text = '{"project": "ALPHA", "title": "rocket \\ud83d\\ude80"}'

    response = send(world.client("member"), "post", "/api/v1/tasks/", text)

    assert response.status_code == 201, response.content
    assert response.json()["title"] == "rocket \U0001f680"


@pytest.mark.parametrize(
    "exc",
    [
        drf_exceptions.ValidationError({"status": ['"\ud800x" is not a valid choice.']}),
        drf_exceptions.ValidationError(["\udfff"]),
        drf_exceptions.ParseError("bad \ud800 byte"),
        drf_exceptions.NotFound("no \ud800 here"),
        ValidationError({"title": ["\ud800"]}),
    ],
)
def test_an_error_that_echoes_a_lone_surrogate_still_renders(exc):
    response = exception_handler(exc, {})
    assert response is not None

    rendered = JSONRenderer().render(response.data)

    body = json.loads(rendered)
    assert body["detail"]
    assert "\\ud" in rendered.decode() or "\\udfff" in rendered.decode()


# --- NUL characters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "field"),
    [
        ("member", "post", "/api/v1/tasks/", {"project": "AL\u0000PHA", "title": "x"}, "project"),
        ("member", "patch", "/api/v1/tasks/ALPHA-1/", {"assignee": "mem\u0000ber"}, "assignee"),
        (
            "staff",
            "post",
            "/api/v1/projects/ALPHA/members/",
            {"user": "out\u0000sider", "role": "member"},
            "user",
        ),
        (
            "member",
            "post",
            "/api/v1/tasks/ALPHA-1/dependencies/",
            {"depends_on": "ALPHA-\u00002"},
            "depends_on",
        ),
        (
            "member",
            "post",
            "/api/v1/projects/ALPHA/exports/",
            {"kind": "tasks_csv", "filters": {"status": ["to\u0000do"]}},
            "filters.status.0",
        ),
        (
            "member",
            "post",
            "/api/v1/projects/ALPHA/exports/",
            {"kind": "commits_csv", "filters": {"author": "a\u0000b"}},
            "filters.author",
        ),
    ],
)
def test_a_nul_character_in_a_json_string_is_a_400_naming_its_path(world, who, method, path, body, field):  # noqa: PLR0917  # one case per parameter
    errors = assert_invalid(send(world.client(who), method, path, json.dumps(body)))

    assert set(errors) == {field}
    assert "NUL" in errors[field][0]
    assert not ExportJob.objects.exists()


def test_a_nul_character_in_a_json_key_is_a_400(world):
    text = json.dumps({"kind": "tasks_csv", "filters": {"sta\u0000tus": ["todo"]}})

    errors = assert_invalid(send(world.client("member"), "post", "/api/v1/projects/ALPHA/exports/", text))

    assert set(errors) == {"filters"}
    assert "NUL" in errors["filters"][0]
    assert not ExportJob.objects.exists()


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("/api/v1/tasks/?project=AL%00PHA", "project"),
        ("/api/v1/tasks/?assignee=mem%00ber", "assignee"),
        ("/api/v1/tasks/?search=fi%00rst", "search"),
        ("/api/v1/tasks/?ordering=%00", "ordering"),
        ("/api/v1/commits/?author=a%00b", "author"),
        ("/api/v1/commits/?sha=abcd%00", "sha"),
        ("/api/v1/commits/?task=ALPHA-%001", "task"),
        ("/api/v1/file-changes/?path_prefix=src%00", "path_prefix"),
        ("/api/v1/files/?language=Py%00", "language"),
        ("/api/v1/repositories/?project=AL%00PHA", "project"),
        ("/api/v1/tasks/?pro%00ject=ALPHA", "pro\u0000ject"),
        ("/api/v1/projects/ALPHA/priorities/?quadrant=%00", "quadrant"),
        ("/projects?search=a%00b", "search"),  # the load test's alias of the project list
    ],
)
def test_a_nul_character_in_a_query_parameter_is_a_400_naming_it(world, query, parameter):
    errors = assert_invalid(world.client("member").get(query))

    assert list(errors) == [parameter]
    assert "NUL" in errors[parameter][0]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/projects/ALPHA/members/a%00/"),
        ("patch", "/api/v1/projects/ALPHA/members/a%00/"),
        ("delete", "/api/v1/projects/ALPHA/members/a%00/"),
        ("delete", "/api/v1/projects/ALPHA/invitations/%00/"),
        ("get", "/api/v1/tasks/ALPHA-1%00/"),
    ],
)
def test_a_nul_character_in_a_path_is_the_json_404(world, method, path):
    """A username in the path went straight into a lookup by name: a DataError for an owner to cause."""
    response = getattr(world.client("owner"), method)(path, {}, format="json")

    assert assert_error(response, 404) == {"detail": "Not found."}


def test_a_nul_character_in_a_basic_username_is_a_401(world):
    """The sign-in lockout looked the username up among failed attempts before anything refused it."""
    credentials = base64.b64encode(b"vic\x00tim:pw").decode()

    response = APIClient().post(
        "/api/v1/tokens/", {}, format="json", HTTP_AUTHORIZATION=f"Basic {credentials}"
    )

    assert assert_error(response, 401) == {"detail": "Invalid username/password."}


def test_a_chunked_body_without_a_length_is_a_411_not_an_empty_body(world):
    """WSGI hands Django a chunked body without a length, which Django reads as empty: a new task was
    'missing' every field. The client is told to send a length instead."""
    response = world.client("member").post(
        "/api/v1/tasks/",
        {"project": "ALPHA", "title": "Chunked"},
        format="json",
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_LENGTH="",
    )

    assert assert_error(response, 411)["detail"].startswith("Send the body with a Content-Length header")
    assert not Task.objects.filter(title="Chunked").exists()


# --- dates past the calendar's edges ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parameter", "value"),
    [
        ("/api/v1/commits/", "since", "9999-12-31T23:59:59-23:59"),
        ("/api/v1/commits/", "until", "0001-01-01T00:00:00+23:59"),
        ("/api/v1/commits/", "since", "1899-12-31T23:59:59Z"),
        ("/api/v1/commits/", "until", "3000-01-01T00:00:00"),
        ("/api/v1/tasks/", "updated_since", "9999-12-31T23:59:59-23:59"),
        ("/api/v1/tasks/", "due_before", "0001-01-01"),
        ("/api/v1/tasks/", "due_after", "9999-12-31"),
    ],
)
def test_a_date_filter_outside_the_supported_days_is_a_400_naming_it(world, path, parameter, value):
    errors = assert_invalid(world.client("member").get(path, {parameter: value}))

    assert set(errors) == {parameter}
    assert "1900-01-01" in errors[parameter][0]


@pytest.mark.parametrize("value", ["1900-01-01T00:00:00Z", "2999-12-31T23:59:59+00:00"])
def test_a_date_filter_at_the_edges_is_accepted(world, value):
    response = world.client("member").get("/api/v1/commits/", {"since": value})

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/tasks/", "updated_since"),
        ("/api/v1/commits/", "since"),
        ("/api/v1/commits/", "until"),
        ("/api/v1/ingestion-runs/", "since"),
    ],
)
@pytest.mark.parametrize("offset", ["-23:59", "+16:00", "+15:59"])
def test_a_time_with_any_iso_offset_filters_as_its_moment_in_utc(world, path, parameter, offset):
    """PostgreSQL takes offsets up to 15:59 and ISO 8601 up to 23:59: ``-23:59`` was a 500 there."""
    response = world.client("member").get(path, {parameter: f"2026-01-01T00:00:00{offset}"})

    assert response.status_code == 200, response.content


def test_a_time_filter_compares_the_same_moment_whatever_its_offset(world):
    commit = world.objects["commit"]
    client = world.client("member")
    moment = commit.timestamp.astimezone(datetime.UTC)
    far_east = moment.astimezone(datetime.timezone(datetime.timedelta(hours=23, minutes=59)))

    at = client.get("/api/v1/commits/", {"since": far_east.isoformat()}).json()["results"]
    after = client.get(
        "/api/v1/commits/", {"since": (far_east + datetime.timedelta(seconds=1)).isoformat()}
    ).json()["results"]

    assert [row["sha"] for row in at] == [commit.sha]
    assert after == []


def cursor(**position: str) -> str:
    return base64.b64encode(urlencode(position).encode()).decode()


@pytest.mark.parametrize(
    "path",
    ["/api/v1/commits/", "/api/v1/file-changes/", "/api/v1/commits/?ordering=timestamp"],
)
@pytest.mark.parametrize(
    "position",
    [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "2026-01-01T00:00:00-23:59",
        "2026-01-01T00:00:00+16:00",
        "notadate",
        "",
        "99999999999999999999999",
        "2024-01-01T00:00:00\u0000",
    ],
)
def test_a_crafted_cursor_is_a_400_on_the_cursor(world, path, position):
    separator = "&" if "?" in path else "?"

    errors = assert_invalid(world.client("member").get(f"{path}{separator}cursor={cursor(p=position)}"))

    assert errors == {"cursor": ["Invalid cursor"]}


@pytest.mark.parametrize(
    "encoded", ["not base64!", base64.b64encode(b"o=-1").decode(), base64.b64encode(b"r=x").decode()]
)
def test_a_cursor_that_does_not_decode_is_the_same_400(world, encoded):
    errors = assert_invalid(world.client("member").get("/api/v1/commits/", {"cursor": encoded}))

    assert errors == {"cursor": ["Invalid cursor"]}


def test_a_crafted_cursor_on_a_webhooks_deliveries_is_a_400_on_the_cursor(world):
    subscription = WebhookSubscriptionFactory(project=world.project)
    WebhookDeliveryFactory(subscription=subscription)
    path = f"/api/v1/projects/ALPHA/webhooks/{subscription.pk}/deliveries/"

    for position in ("notadate", "9999-12-31T23:59:59-23:59"):
        response = world.client("owner").get(path, {"cursor": cursor(p=position)})
        assert assert_invalid(response) == {"cursor": ["Invalid cursor"]}


def test_a_cursor_the_api_gave_still_pages(world):
    client = world.client("member")

    first = client.get("/api/v1/commits/", {"page_size": 1}).json()
    assert first["next"] is None  # ALPHA has one commit: its cursor must still be honoured below
    position = world.objects["commit"].timestamp.isoformat()
    response = client.get("/api/v1/commits/", {"cursor": cursor(p=position, r="1")})

    assert response.status_code == 200, response.content


# --- bodies over the upload limit ------------------------------------------------------------------------


def test_a_body_over_the_upload_limit_is_a_413(world):
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    text = json.dumps({"project": "ALPHA", "title": "x", "description": "d" * size})

    body = assert_error(send(world.client("member"), "post", "/api/v1/tasks/", text), 413)

    assert f"{size:,}" in body["detail"]
    assert Task.objects.filter(project=world.project).count() == 2


def test_a_form_body_over_the_upload_limit_is_a_413(world):
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = world.client("member").post(
        "/api/v1/tasks/",
        data=urlencode({"project": "ALPHA", "title": "x", "description": "d" * size}),
        content_type="application/x-www-form-urlencoded",
    )

    assert_error(response, 413)


def test_a_body_just_under_the_upload_limit_is_read(world):
    text = json.dumps({"project": "ALPHA", "title": "x", "description": "d" * 10_000})

    response = send(world.client("member"), "post", "/api/v1/tasks/", text)

    assert response.status_code == 201, response.content


# --- values the database stores but APM cannot plan with -------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "-0.25"])
def test_a_negative_estimate_is_a_400(world, value):
    errors = assert_invalid(
        world.client("member").post(
            "/api/v1/tasks/", {"project": "ALPHA", "title": "x", "estimate_hours": value}, format="json"
        )
    )

    assert set(errors) == {"estimate_hours"}
    assert Task.objects.filter(project=world.project).count() == 2


def test_a_negative_estimate_is_refused_by_the_services(world):
    with pytest.raises(ValidationError) as refused:
        task_create(project=world.project, title="x", source=TaskEvent.Source.API, estimate_hours=Decimal(-1))
    assert set(refused.value.message_dict) == {"estimate_hours"}

    with pytest.raises(ValidationError) as refused:
        task_update(task=world.objects["task"], source=TaskEvent.Source.API, estimate_hours=Decimal("-2"))
    assert set(refused.value.message_dict) == {"estimate_hours"}


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1899-12-31", "3000-01-01"])
def test_a_due_date_outside_the_supported_days_is_a_400(world, day):
    client = world.client("member")

    errors = assert_invalid(client.patch("/api/v1/tasks/ALPHA-1/", {"due_date": day}, format="json"))
    assert set(errors) == {"due_date"}
    errors = assert_invalid(
        client.post("/api/v1/tasks/", {"project": "ALPHA", "title": "x", "due_date": day}, format="json")
    )
    assert set(errors) == {"due_date"}


@pytest.mark.parametrize("field", ["start_date", "target_date"])
@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_a_project_date_outside_the_supported_days_is_a_400(world, field, day):
    client = world.client("owner")

    errors = assert_invalid(client.patch("/api/v1/projects/ALPHA/", {field: day}, format="json"))
    assert set(errors) == {field}
    errors = assert_invalid(client.post("/api/v1/projects/", {"name": "Gamma", field: day}, format="json"))
    assert set(errors) == {field}
    assert not Project.objects.filter(name="Gamma").exists()


def test_days_outside_the_supported_range_are_refused_by_the_services(world):
    far = datetime.date(9999, 12, 31)

    with pytest.raises(ValidationError) as refused:
        project_create(name="Gamma", start_date=datetime.date(1, 1, 1))
    assert set(refused.value.message_dict) == {"start_date"}
    with pytest.raises(ValidationError) as refused:
        project_update(project=world.project, target_date=far)
    assert set(refused.value.message_dict) == {"target_date"}
    with pytest.raises(ValidationError) as refused:
        task_create(project=world.project, title="x", source=TaskEvent.Source.API, due_date=far)
    assert set(refused.value.message_dict) == {"due_date"}
    with pytest.raises(ValidationError) as refused:
        task_update(task=world.objects["task"], source=TaskEvent.Source.API, due_date=far)
    assert set(refused.value.message_dict) == {"due_date"}
