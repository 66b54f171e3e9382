"""No hostile input reaches a 500, on any write or list route of the OpenAPI schema.

Hypothesis draws an operation of the schema the API publishes, builds a request that would be valid for
it in the test world, and makes one part of it hostile (tests/api/hostile.py): a body field nested past
the parsers' limit or holding a lone surrogate, a NUL, a time past year 9999 in UTC; a query parameter
with a NUL, such a time or a hand-made cursor. Whatever the answer, it is not a server error. New routes
are fuzzed as soon as they are in the schema. ``APM_HOSTILE_EXAMPLES`` sets the number of requests (100).
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from projects.models import Membership
from tests.api.hostile import hostile_body, hostile_query
from tests.factories import ExportJobFactory, MembershipFactory, WebhookSubscriptionFactory

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("post", "patch", "put")
# The push webhook's credential is an HMAC of the body (random bodies never pass it; it has its own
# tests); deletions would remove the world the next examples need.
SKIPPED = ("/api/v1/hooks/push/",)

# Values that make a body valid in the test world, by property name; other required properties get a
# value of their type. A valid body reaches the services, so the hostile field is tested that far.
VALID = {
    "project": "ALPHA",
    "title": "Fuzzed",
    "name": "Fuzzed",
    "depends_on": "ALPHA-2",
    "user": "viewer",
    "username": "viewer",
    "role": "member",
    "kind": "tasks_csv",
    "url": "https://hooks.example.com/apm",
    "source": "https://git.example.com/team/fuzz.git",
    "status": "in_progress",
    "due_date": "2030-01-31",
}
BY_TYPE: dict[str, Any] = {
    "string": "x",
    "integer": 1,
    "number": 1,
    "boolean": True,
    "array": [],
    "object": {},
}


@functools.cache
def schema() -> dict[str, Any]:
    return APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema()["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


@functools.cache
def operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, operation) of every write with a JSON body and every GET with a query."""
    found = []
    for path, methods in schema()["paths"].items():
        if path in SKIPPED:
            continue
        for method, operation in methods.items():
            content = operation.get("requestBody", {}).get("content", {})
            query = [p for p in operation.get("parameters", []) if p["in"] == "query"]
            if (method in WRITE_METHODS and "application/json" in content) or (method == "get" and query):
                found.append((method, path, operation))
    return found


def valid_body(operation: dict[str, Any]) -> dict[str, Any]:
    body_schema = _resolve(operation["requestBody"]["content"]["application/json"]["schema"])
    properties = body_schema.get("properties", {})
    body = {name: VALID[name] for name in properties if name in VALID}
    for name in body_schema.get("required", []):
        if name not in body:
            prop = _resolve(properties.get(name, {}))
            body[name] = prop["enum"][0] if prop.get("enum") else BY_TYPE.get(prop.get("type", "string"), "x")
    return body


def url_of(template: str, ids: dict[str, int]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name == "key":
            return "ALPHA-1" if template.startswith("/api/v1/tasks/") else "ALPHA"
        if name == "id":
            collection = template[: match.start()].rstrip("/").rsplit("/", 1)[1]
            return str(ids.get(collection, 1))
        return {
            "project_key": "ALPHA",
            "project": "ALPHA",
            "username": "viewer",
            "depends_on": "ALPHA-2",
        }.get(name, "1")

    return re.sub(r"\{(\w+)\}", value, template)


@pytest.fixture
def fuzz_client(world: Any) -> tuple[APIClient, dict[str, int]]:
    """A signed-in staff owner of ALPHA (every route answers it), and the ids the URLs name."""
    staff = world.users["staff"]
    MembershipFactory(project=world.project, user=staff, role=Membership.Role.OWNER)
    client = APIClient()
    client.force_login(staff)
    ids = {
        "repositories": world.objects["repository"].pk,
        "ingestion-runs": world.objects["run"].pk,
        "commits": world.objects["commit"].pk,
        "file-changes": world.objects["file_change"].pk,
        "files": world.objects["file"].pk,
        "webhooks": WebhookSubscriptionFactory(project=world.project).pk,
        "exports": ExportJobFactory(project=world.project).pk,
    }
    return client, ids


def _request(data: st.DataObject, ids: dict[str, int]) -> tuple[str, str, Any]:
    """(method, url, body text or query dict) of one hostile request."""
    index = data.draw(st.integers(min_value=0, max_value=len(operations()) - 1))
    method, template, operation = operations()[index]
    event(f"{method.upper()} {template}")
    url = url_of(template, ids)
    if method in WRITE_METHODS:
        body = data.draw(hostile_body(valid_body(operation)), label="body")
        return method, url, body if isinstance(body, str) else json.dumps(body)
    names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
    return method, url, data.draw(hostile_query({}, names), label="query")


@hypothesis_settings(
    max_examples=int(os.environ.get("APM_HOSTILE_EXAMPLES", "100")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_hostile_request_is_answered_with_a_server_error(fuzz_client, data):
    client, ids = fuzz_client
    method, url, payload = _request(data, ids)

    # Each example starts from the same world: what it wrote is rolled back at its end.
    with transaction.atomic():
        try:
            if method == "get":
                response = client.get(url, payload)
            else:
                response = client.generic(
                    method.upper(), url, payload.encode(), content_type="application/json"
                )
        finally:
            transaction.set_rollback(True)

    event(f"{method.upper()} answered {response.status_code}")  # pytest --hypothesis-show-statistics
    assert response.status_code < 500, (method, url, payload[:300], response.content[:500])
