from __future__ import annotations

import pytest
from django.core.cache import caches

from tasks.models import TaskEvent
from tasks.services import task_create, task_transition
from tests.factories import ProjectFactory
from tests.processes import PRODUCTION_ENV, manage
from tests.services import UNREACHABLE_REDIS


@pytest.mark.django_db
def test_healthz_answers_without_touching_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_checks_the_database_and_the_cache(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["cache"]["ok"] is True


@pytest.mark.django_db
def test_readyz_stays_ready_but_degraded_when_the_cache_is_unreachable(client, settings):
    settings.CACHES = UNREACHABLE_REDIS
    try:
        response = client.get("/readyz")
    finally:
        caches["default"].close()

    # Pages still work without Redis (IGNORE_EXCEPTIONS), so the pod stays in service.
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["cache"] == {"ok": False, "ms": body["checks"]["cache"]["ms"]}
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_metrics_expose_request_database_and_apm_figures(client, django_capture_on_commit_callbacks):
    project = ProjectFactory()
    with django_capture_on_commit_callbacks(execute=True):
        task = task_create(project=project, title="Measured", source=TaskEvent.Source.API)
        task_transition(task=task, status="in_progress", source=TaskEvent.Source.API)
    client.get("/healthz")

    body = client.get("/metrics").content.decode()

    assert "django_http_requests_total_by_method_total" in body
    assert "django_db_execute_total" in body
    assert 'apm_tasks_created_total{source="api"}' in body
    assert 'apm_task_transitions_total{source="api",to_status="in_progress"}' in body


def test_readyz_is_unavailable_when_the_database_is_down():
    # A real process whose DATABASE_URL points at a port where no server listens.
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.test import Client; r = Client().get('/readyz', HTTP_HOST='localhost'); "
        "print(r.status_code, r.json()['status'], r.json()['checks']['database']['ok'])",
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL="postgres://apm@127.0.0.1:1/apm",
        DATABASE_POOL_SIZE="0",
        DATABASE_POOL_TIMEOUT="1",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["503", "unavailable", "False"]


@pytest.mark.parametrize(
    ("asked", "expected"), [({}, "absent"), ({"APM_LOADTEST_BASELINE": "true"}, "mounted")]
)
def test_the_load_baseline_is_mounted_in_production_only_when_asked(asked: dict[str, str], expected: str):
    # The load scenario's constant view: off unless a load test's server asks for it.
    where = (
        "from django.urls import Resolver404, resolve\n"
        "try:\n    resolve('/loadtest/baseline')\n    print('mounted')\n"
        "except Resolver404:\n    print('absent')\n"
    )
    result = manage("shell", "-c", where, **{**PRODUCTION_ENV, **asked})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected
