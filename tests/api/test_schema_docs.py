"""The OpenAPI schema validates without warnings, documents its errors, and its pages work offline."""

from __future__ import annotations

import inspect
import time
from io import StringIO
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.urls import URLResolver, get_resolver
from rest_framework.test import APIClient
from rest_framework.views import APIView

from apm.cache import window_read

# APM's own packages: the base classes and mixins its views share are written for maintainers.
APPS = {"apm", "config", "projects", "tasks", "repos", "reports", "webhooks", "insights", "monitoring"}


def _routed_views(patterns: list[Any]) -> set[type]:
    """The view classes the URLconf serves (a base class that is also served documents itself)."""
    found: set[type] = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found |= _routed_views(pattern.url_patterns)
        elif getattr(pattern.callback, "cls", None) is not None:
            found.add(pattern.callback.cls)
    return found


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found.union(*(_subclasses(sub) for sub in found)) if found else found


pytestmark = pytest.mark.django_db


def test_the_schema_validates_without_a_single_warning(tmp_path):
    target = tmp_path / "schema.yml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target), stderr=StringIO())

    schema = yaml.safe_load(target.read_text())
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/commits/" in schema["paths"]
    assert (
        "/projects" not in schema["paths"]
    )  # the load test's alias is documented once, as /api/v1/projects/


def test_every_operation_documents_its_errors():
    schema = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    transition = schema["paths"]["/api/v1/tasks/{key}/transition/"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "429"} <= set(transition)
    assert transition["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationError")
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "429" in operation["responses"], (method, path)
            if "{" in path:
                assert "404" in operation["responses"], (method, path)


def test_operations_are_described_for_api_users_never_by_a_base_classs_docstring():
    """A view without a docstring of its own would publish its base class's, written for maintainers."""
    schema = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    routed = _routed_views(get_resolver().url_patterns)
    internal = {
        inspect.cleandoc(base.__doc__)
        for view in _subclasses(APIView)
        for base in view.__mro__[1:]
        if base.__module__.split(".")[0] in APPS and base.__doc__ and base not in routed
    }

    leaked = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if operation.get("description", "").strip() in internal
    ]

    assert internal
    assert leaked == []


def test_swagger_ui_and_redoc_are_served_from_apm_itself():
    client = APIClient()

    swagger = client.get("/api/v1/docs/")
    redoc = client.get("/api/v1/redoc/")

    for page in (swagger, redoc):
        assert page.status_code == 200
        body = page.content.decode()
        assert "drf_spectacular_sidecar" in body
        assert "cdn.jsdelivr" not in body
        assert "unpkg.com" not in body


def test_the_throttle_counts_in_the_shared_cache(world, settings):
    settings.APM_API_THROTTLE_RATES = {**settings.APM_API_THROTTLE_RATES, "user": "2/min"}
    first, second = world.client("member"), world.client("member")  # two clients, one user

    answers = [first.get("/api/v1/me/").status_code, second.get("/api/v1/me/").status_code]
    answers.append(first.get("/api/v1/me/").status_code)

    assert answers == [200, 200, 429]
    # The counts live in the default cache (Redis when REDIS_URL is set), where every process reads them:
    # the three requests, the refused one included, in this window and the last (one edge may lie between).
    counts = window_read(f"throttle_user_{world.users['member'].pk}", window=60, now=time.time())
    assert counts is not None
    assert sum(counts) == 3
