"""The admin's figures are the cached selectors' entries, and every change drops them, deletions included."""

from __future__ import annotations

import pytest
from django.urls import reverse

from insights.selectors import code_figures_cached, task_priorities_cached
from reports.models import ExportJob
from tests.factories import ProjectFactory, RepositoryFactory, TaskFactory

pytestmark = pytest.mark.django_db


def test_a_task_deleted_in_the_admin_leaves_the_projects_figures(
    admin_client, django_capture_on_commit_callbacks
):
    project = ProjectFactory()
    kept, deleted = TaskFactory(project=project, title="kept"), TaskFactory(project=project, title="gone")
    page = reverse("admin:projects_project_change", args=[project.pk])
    assert "gone" in admin_client.get(page).content.decode()  # the priorities panel, now cached

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:tasks_task_delete", args=[deleted.pk]), {"post": "yes"})
    assert response.status_code == 302

    assert [task.pk for task in task_priorities_cached(project=project)] == [kept.pk]
    admin_client.get(reverse("admin:index"))  # shows (and so drops) the "was deleted" message
    assert "gone" not in admin_client.get(page).content.decode()


def test_repositories_deleted_in_bulk_leave_the_code_figures(
    admin_client, django_capture_on_commit_callbacks
):
    repository = RepositoryFactory()
    project = repository.project
    before = code_figures_cached(project=project, figure="contributors", limit=10)
    assert before["results"] == []

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:repos_repository_changelist"),
            {"action": "delete_selected", "_selected_action": [repository.pk], "post": "yes"},
        )
    assert response.status_code == 302
    assert not project.repositories.exists()
    # The summary counted the repository; its entry was dropped with it.
    summary = admin_client.get(f"/api/v1/projects/{project.key}/summary/")
    assert summary.status_code == 200
    assert summary.json()["repositories"] == 0
    assert ExportJob.objects.count() == 0  # nothing else was touched


def test_the_admins_coupling_panel_and_the_api_share_one_entry(django_assert_num_queries):
    repository = RepositoryFactory()
    project = repository.project
    code_figures_cached(project=project, figure="coupling", repository=repository.pk, limit=10)
    with django_assert_num_queries(0):
        # What the API asks by default: min_shared=3, named.
        code_figures_cached(
            project=project, figure="coupling", repository=repository.pk, limit=10, min_shared=3
        )
