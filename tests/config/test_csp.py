"""The Content-Security-Policy header (django-csp, config.settings.base): on every HTML page, strict, and
relaxed only where a page's third-party bundle needs it (the API's Swagger UI, ReDoc, browsable API).

tests/e2e/test_csp.py opens each kind of page in a real browser and checks that nothing is refused.
"""

from __future__ import annotations

import pytest
from django.test import Client

from repos.models import Repository
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.processes import manage

pytestmark = pytest.mark.django_db

STRICT = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "font-src": {"'self'"},
    "object-src": {"'none'"},
    "base-uri": {"'self'"},
    "form-action": {"'self'"},
    "frame-ancestors": {"'none'"},
}


def policy(response) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    """The response's Content-Security-Policy, directive by directive."""
    header = response["Content-Security-Policy"]
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {name: set(sources) for name, *sources in directives}


@pytest.fixture
def staff_client() -> tuple[Client, dict[str, str]]:
    """A staff member of a project with a repository, signed in; the pages' paths for them."""
    user = UserFactory(is_staff=True, is_superuser=True)
    project = MembershipFactory(user=user, project=ProjectFactory(key="CSP")).project
    repository = Repository.objects.create(project=project, name="policy", source="https://example.com/a.git")
    client = Client()
    client.force_login(user)
    return client, {
        "dashboard": "/dashboard",
        "project page": "/projects/CSP/",
        "project panel": "/projects/CSP/panels/health/",
        "repository page": f"/repositories/{repository.pk}/",
        "admin index": "/admin/",
        "admin changelist": "/admin/projects/project/",
        "admin change form": f"/admin/projects/project/{project.pk}/change/",
        "admin repository": f"/admin/repos/repository/{repository.pk}/change/",
    }


def test_every_page_answers_with_the_strict_policy(staff_client):
    client, paths = staff_client

    answers = {name: client.get(path) for name, path in paths.items()}
    answers["sign-in"] = Client().get("/accounts/login/")
    answers["admin sign-in"] = Client().get("/admin/login/")
    answers["not found"] = client.get("/no-such-page/")

    assert {name: response.status_code for name, response in answers.items()} == {
        **dict.fromkeys(answers, 200),
        "not found": 404,
    }
    assert {name: policy(response) for name, response in answers.items()} == dict.fromkeys(answers, STRICT)
    # Old browsers that ignore frame-ancestors still read X-Frame-Options.
    assert {response["X-Frame-Options"] for response in answers.values()} == {"DENY"}


def test_the_browsable_api_may_style_inline_but_runs_only_apms_scripts(staff_client):
    client, _ = staff_client

    page = client.get("/api/v1/projects/", HTTP_ACCEPT="text/html")

    assert page["Content-Type"].startswith("text/html")
    assert policy(page) == {**STRICT, "style-src": {"'self'", "'unsafe-inline'"}}


def test_swagger_ui_may_style_inline_and_loads_its_start_up_script_as_a_file():
    page = Client().get("/api/v1/docs/")
    script = Client().get("/api/v1/docs/?script=")

    assert policy(page) == {**STRICT, "style-src": {"'self'", "'unsafe-inline'"}}
    # The split view: no inline <script> for the policy to refuse, the start-up code is this file.
    body = page.content.decode()
    assert '<script src="/api/v1/docs/?script="></script>' in body
    assert "<script>" not in body
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")


def test_redoc_may_style_inline_and_start_its_search_worker_and_names_no_other_site():
    page = Client().get("/api/v1/redoc/")

    assert policy(page) == {**STRICT, "style-src": {"'self'", "'unsafe-inline'"}, "worker-src": {"blob:"}}
    body = page.content.decode()
    assert "fonts.googleapis.com" not in body
    assert "fonts.gstatic.com" not in body


def test_the_api_json_answers_carry_the_strict_policy_too(staff_client):
    client, _ = staff_client

    answer = client.get("/api/v1/projects/", HTTP_ACCEPT="application/json")

    assert answer["Content-Type"] == "application/json"
    assert policy(answer) == STRICT


def test_a_cdn_for_static_files_is_allowed_for_scripts_styles_images_and_fonts():
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; d = settings.CONTENT_SECURITY_POLICY['DIRECTIVES'];"
        "print(d['script-src'], d['style-src'], d['img-src'], d['font-src'], d['default-src'])",
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DJANGO_STATIC_URL="https://cdn.example.com/apm/static/",
    )

    assert result.returncode == 0, result.stderr
    cdn = "'https://cdn.example.com'"
    assert result.stdout.split("\n")[-2] == (
        f"[\"'self'\", {cdn}] [\"'self'\", {cdn}] [\"'self'\", 'data:', {cdn}] "
        f"[\"'self'\", {cdn}] [\"'self'\"]"
    )
