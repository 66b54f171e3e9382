"""The admin for repositories and ingestion output, driven through its HTTP views."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest
from django.db.models import Model
from django.urls import reverse

from repos.models import CommitTaskLink, IngestionRun, Repository
from tests.admin_helpers import admin_form_data, assert_changelist_queries_fixed
from tests.factories import (
    CommitFactory,
    FileChangeFactory,
    FileFactory,
    IngestionRunFactory,
    RepositoryFactory,
    TaskFactory,
)
from tests.faults.test_broker_down import publishing_to
from tests.processes import free_port

pytestmark = pytest.mark.django_db

READ_ONLY_MODELS = ["commit", "filechange", "file", "committasklink", "ingestionrun"]


@pytest.fixture
def rows() -> dict[str, Model]:
    """One row of every model, linked the way ingestion links them."""
    repository = RepositoryFactory()
    commit = CommitFactory(repository=repository)
    task = TaskFactory(project=repository.project)
    return {
        "repository": repository,
        "commit": commit,
        "filechange": FileChangeFactory(commit=commit),
        "file": FileFactory(repository=repository),
        "committasklink": CommitTaskLink.objects.create(commit=commit, task=task),
        "ingestionrun": IngestionRunFactory(repository=repository),
    }


# --- Smoke: every page of every registered model renders for a superuser ------------------------------


@pytest.mark.parametrize("model", ["repository", *READ_ONLY_MODELS])
def test_changelist_lists_the_row(admin_client, rows, model):
    response = admin_client.get(reverse(f"admin:repos_{model}_changelist"))

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [rows[model]]


def test_repository_add_page_renders(admin_client):
    response = admin_client.get(reverse("admin:repos_repository_add"))

    assert response.status_code == 200
    assert response.context["add"] is True


def test_repository_change_page_renders(admin_client, rows):
    repository = rows["repository"]

    response = admin_client.get(reverse("admin:repos_repository_change", args=[repository.pk]))

    assert response.status_code == 200
    assert response.context["original"] == repository
    assert response.context["has_change_permission"] is True


@pytest.mark.parametrize("model", READ_ONLY_MODELS)
def test_read_only_admin_shows_but_does_not_add_or_change(admin_client, rows, model):
    obj = rows[model]
    change_url = reverse(f"admin:repos_{model}_change", args=[obj.pk])

    view = admin_client.get(change_url)

    assert view.status_code == 200
    assert view.context["original"] == obj
    assert view.context["has_change_permission"] is False
    assert admin_client.get(reverse(f"admin:repos_{model}_add")).status_code == 403
    assert admin_client.post(change_url, {}).status_code == 403


# --- Query counts: a changelist costs the same number of queries for 1 row and for 50 ------------------


def _spread_over_repositories(count: int) -> Iterator[Repository]:
    """``count`` repositories for ``count`` new rows, taking turns among three (made on first use)."""
    repositories = list(Repository.objects.order_by("pk")[:3]) or [RepositoryFactory() for _ in range(3)]
    return itertools.islice(itertools.cycle(repositories), count)


def _repositories(count: int) -> None:
    for _ in range(count):
        RepositoryFactory()  # a project of its own each


def _commits(count: int) -> None:
    for repository in _spread_over_repositories(count):
        CommitFactory(repository=repository)


def _file_changes(count: int) -> None:
    for repository in _spread_over_repositories(count):
        FileChangeFactory(commit=CommitFactory(repository=repository))


def _files(count: int) -> None:
    for repository in _spread_over_repositories(count):
        FileFactory(repository=repository)


def _commit_task_links(count: int) -> None:
    for repository in _spread_over_repositories(count):
        CommitTaskLink.objects.create(
            commit=CommitFactory(repository=repository), task=TaskFactory(project=repository.project)
        )


def _ingestion_runs(count: int) -> None:
    for repository in _spread_over_repositories(count):
        IngestionRunFactory(repository=repository)


# The row-estimate lookup of EstimatedCountPaginator; SQLite has no statistics to read.
ESTIMATE = 0 if os.environ.get("DATABASE_URL", "sqlite").startswith("sqlite") else 1


@pytest.mark.parametrize(
    ("model", "add_rows", "expected"),
    [
        # 1 session, 2 user, 3 COUNT for the paginator, 4 COUNT of all rows ("50 total",
        # show_full_result_count), 5 the rows with project joined (list_select_related)
        pytest.param("repository", _repositories, 5, id="repository"),
        # Lists of the big tables use EstimatedCountPaginator: on PostgreSQL and MariaDB it first reads the
        # table's row estimate (+ESTIMATE below), then counts exactly because the table is small.
        # 1 session, 2 user, 3 the repositories for the filter (from the repositories table),
        # 4 COUNT for the paginator (no second COUNT: show_full_result_count = False),
        # 5 the rows with repository joined, reading the first 100 characters of the message, not all of it
        pytest.param("commit", _commits, 5 + ESTIMATE, id="commit"),
        # 1 session, 2 user, 3 COUNT for the paginator (no second COUNT),
        # 4 the rows with commit and repository joined
        pytest.param("filechange", _file_changes, 4 + ESTIMATE, id="filechange"),
        # 1 session, 2 user, 3 the repositories for the filter (from the repositories table),
        # 4 COUNT for the paginator (no second COUNT), 5 the rows with repository joined,
        # 6 DISTINCT language (the language filter's choices)
        pytest.param("file", _files, 6 + ESTIMATE, id="file"),
        # 1 session, 2 user, 3 COUNT for the paginator (no second COUNT),
        # 4 the rows with commit, task and the task's project (for its key) joined
        pytest.param("committasklink", _commit_task_links, 4 + ESTIMATE, id="committasklink"),
        # 1 session, 2 user, 3 COUNT for the paginator (no second COUNT),
        # 4 the rows with repository joined
        pytest.param("ingestionrun", _ingestion_runs, 4, id="ingestionrun"),
    ],
)
def test_changelist_queries_do_not_grow_with_rows(
    admin_client, django_assert_num_queries, model: str, add_rows: Callable[[int], None], expected: int
):
    url = reverse(f"admin:repos_{model}_changelist")
    assert_changelist_queries_fixed(admin_client, django_assert_num_queries, url, add_rows, expected)


# --- Behaviour -------------------------------------------------------------------------------------------


def test_commit_list_shows_the_subject_line_only(admin_client):
    commit = CommitFactory(message="Fix the parser\n\nThe long story of the bug, SECRET-DETAIL included.")

    response = admin_client.get(reverse("admin:repos_commit_changelist"))

    assert response.status_code == 200
    changelist = response.context["cl"]
    [row] = changelist.result_list
    assert changelist.model_admin.subject_preview(row) == "Fix the parser"
    assert "message" in row.get_deferred_fields()  # the list reads 100 characters, not the message
    page = response.content.decode()
    assert "Fix the parser" in page
    assert "SECRET-DETAIL" not in page
    assert commit.short_sha in page


def test_commit_change_page_shows_the_whole_message(admin_client):
    commit = CommitFactory(message="Fix the parser\n\nThe long story of the bug.")

    response = admin_client.get(reverse("admin:repos_commit_change", args=[commit.pk]))

    assert response.status_code == 200
    assert "The long story of the bug." in response.content.decode()


def test_repository_change_saves_the_form(admin_client):
    repository = RepositoryFactory(default_branch="main")
    url = reverse("admin:repos_repository_change", args=[repository.pk])
    data = admin_form_data(admin_client.get(url), default_branch="trunk")

    response = admin_client.post(url, data)

    assert response.status_code == 302
    repository.refresh_from_db()
    assert repository.default_branch == "trunk"
    assert repository.is_active is True  # the checkbox was posted back as it was


def test_repository_change_can_deactivate(admin_client):
    repository = RepositoryFactory()
    IngestionRunFactory(repository=repository, status=IngestionRun.Status.FAILED)  # a row in the inline
    url = reverse("admin:repos_repository_change", args=[repository.pk])
    data = admin_form_data(admin_client.get(url), is_active=None)  # untick the box

    response = admin_client.post(url, data)

    assert response.status_code == 302
    repository.refresh_from_db()
    assert repository.is_active is False
    assert repository.ingestion_runs.get().status == IngestionRun.Status.FAILED


@pytest.mark.django_db(transaction=True)  # the message is published when the run's row commits
def test_ingest_now_with_the_broker_down_says_so_and_records_no_run(admin_client):
    """The admin's action answered a 500 when the broker refused the message."""
    repository = RepositoryFactory()

    with publishing_to(f"redis://127.0.0.1:{free_port()}/0"):
        response = admin_client.post(
            "/admin/repos/repository/",
            {"action": "ingest_now", "_selected_action": [repository.pk]},
            follow=True,
        )

    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    assert len(shown) == 1
    assert shown[0].startswith("Nothing was queued: the task queue's broker (redis://127.0.0.1:")
    assert not IngestionRun.objects.filter(repository=repository).exists()
