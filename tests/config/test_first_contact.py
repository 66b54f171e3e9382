"""A new user's first ``make run``: a quiet console, a clear stop when the port is taken, JSON from the API
under DEBUG, and the toolbar out of the way."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.processes import ROOT, manage

# An eager task under the development settings, as `make run`'s ingestion runs its chunks: a built-in
# task, so no database is needed.
_EAGER_TASK = """
from celery import current_app
print("result", current_app.tasks["celery.accumulate"].apply_async(args=(1, 2)).get())
"""


def _local(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in ``manage.py shell`` with the settings `make run` uses, on a database of its own."""
    return manage(
        "shell",
        "--no-imports",
        "-c",
        code,
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=f"sqlite:///{tmp_path / 'first-contact.sqlite3'}",
        **env,
    )


def test_eager_tasks_run_without_broker_warnings_or_a_trace_line_each(tmp_path: Path) -> None:
    ran = _local(_EAGER_TASK, tmp_path)

    assert ran.returncode == 0, ran.stderr
    assert "result (1, 2)" in ran.stdout
    output = ran.stdout + ran.stderr
    assert "No hostname was supplied" not in output
    assert "succeeded in" not in output


def test_the_check_above_sees_the_warning_an_unnamed_in_process_broker_gives(tmp_path: Path) -> None:
    # The same task with an in-process broker URL that names no host (the default names one): kombu
    # warns. This keeps the test above honest (it would notice the warning).
    ran = _local(_EAGER_TASK, tmp_path, CELERY_BROKER_URL="memory://", CELERY_TASK_ALWAYS_EAGER="1")

    assert ran.returncode == 0, ran.stderr
    assert "No hostname was supplied" in ran.stdout + ran.stderr


def test_task_failures_are_still_logged() -> None:
    # Only Celery's per-task success lines are quiet: its warnings and errors pass.
    assert logging.getLogger("celery.app.trace").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("celery.app.trace").isEnabledFor(logging.INFO)


def test_the_debug_toolbar_starts_collapsed(tmp_path: Path) -> None:
    ran = _local("from django.conf import settings; print(settings.DEBUG_TOOLBAR_CONFIG)", tmp_path)

    assert ran.returncode == 0, ran.stderr
    assert "'SHOW_COLLAPSED': True" in ran.stdout
    assert "'ROOT_TAG_EXTRA_ATTRS': 'hx-preserve'" in ran.stdout


def test_the_load_scenarios_serve_without_the_toolbar(tmp_path: Path) -> None:
    """The load scenarios (loadtests/scenario.py) serve APM as deployed: the production settings, which
    have no debug toolbar to slow every request down."""
    from benchmarks.soak import stack_env  # noqa: PLC0415 (a benchmark's module, imported by this test only)

    env = stack_env(
        database_url=f"sqlite:///{tmp_path / 'load.sqlite3'}",
        workdir=tmp_path,
        redis_url="redis://127.0.0.1:1",
    )
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"

    ran = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print('debug_toolbar' in settings.INSTALLED_APPS, settings.DEBUG)",
        **{
            key: value
            for key, value in env.items()
            if key.startswith(("DJANGO_", "DATABASE_", "APM_", "REDIS_", "CELERY_"))
        },
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().endswith("False False")


@pytest.mark.parametrize(
    "path", ["/api/v1/nope/", "/api/v1/", "/api/v1/projects/NOPE/nonsense/", "/api/v1/a/b/c/"]
)
def test_api_paths_that_match_nothing_answer_json_under_debug(client, settings, path: str) -> None:
    settings.DEBUG = True  # Django's own HTML 404 page would answer, bypassing handler404

    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"detail": "Not found."}


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
def test_an_api_path_without_its_slash_is_the_same_route_for_every_method(settings, debug: bool) -> None:
    """A POST to /api/v1/tokens was Django's HTML error page under DEBUG and a 301 otherwise (the body
    lost); every method now reaches the route, and a path that matches nothing is the JSON 404."""
    settings.DEBUG = debug
    user = User.objects.create_user("slash", password="slash-pass-1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"slash:slash-pass-1").decode())

    created = client.post("/api/v1/tokens", {"name": "no slash"}, format="json")
    listed = client.get("/api/v1/tokens")
    missing_get = client.get("/api/v1/nope")
    missing_post = client.post("/api/v1/nope", {}, format="json")

    assert created.status_code == 201, created.content
    assert user.api_tokens.count() == 1
    assert listed.status_code == 200
    for missing in (missing_get, missing_post):
        assert missing.status_code == 404
        assert missing["Content-Type"] == "application/json"
        assert json.loads(missing.content) == {"detail": "Not found."}


@pytest.mark.django_db
def test_real_api_routes_still_answer(client, settings) -> None:
    settings.DEBUG = True

    response = client.get("/api/v1/projects/")

    # Not the catch-all: the project list's own answer (it needs a login).
    assert response.status_code in (401, 403)
    assert response["Content-Type"] == "application/json"


def test_pages_outside_the_api_keep_djangos_page(client, settings) -> None:
    settings.DEBUG = True

    response = client.get("/nope/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_make_run_stops_before_any_work_when_its_address_is_taken(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    database = tmp_path / "never.sqlite3"
    try:
        ran = subprocess.run(
            ["make", "--no-print-directory", "run", f"RUN_ADDRESS=127.0.0.1:{port}"],
            cwd=ROOT,
            env={
                **{key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}},
                "DATABASE_URL": f"sqlite:///{database}",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        taken.close()

    assert ran.returncode != 0
    assert f"127.0.0.1:{port} is already in use" in ran.stderr
    assert "RUN_ADDRESS=" in ran.stderr  # says how to serve elsewhere
    # Nothing ran: no install, no migration, no database file.
    assert "manage.py" not in ran.stdout
    assert not database.exists()
