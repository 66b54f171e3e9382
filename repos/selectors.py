"""Reads of repositories and their ingestion output, as the API and the pages list them.

Each list is built for a page of it: what a row shows comes joined in, or is attached to the whole page
in one more query (``*_attach``), so a page costs a fixed number of queries whatever its length.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypedDict, cast

from django.db.models import OuterRef, QuerySet, Subquery

from repos.models import Commit, CommitTaskLink, File, FileChange, IngestionRun, Repository
from tasks.models import Task

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class _LastRunId(TypedDict):
        last_run_id: int | None


def repository_list() -> QuerySet[Repository]:
    """Repositories with their project and the id of their latest run.

    The latest run's id comes from idx_ingestion_runs_repo_time, one subquery per row of the page;
    ``last_runs_attach`` reads the runs themselves for the whole page.
    """
    last_run = IngestionRun.objects.filter(repository=OuterRef("pk")).order_by("-created_at", "-id")
    return (
        Repository.objects.filter(deleting_since__isnull=True)
        .select_related("project")
        .annotate(last_run_id=Subquery(last_run.values("id")[:1]))
    )


def last_runs_attach(repositories: Iterable[Repository]) -> None:
    """Give each repository of ``repository_list`` its latest run, read for the whole page in one query."""
    # Rows of repository_list(), which annotates last_run_id.
    annotated = cast("list[WithAnnotations[Repository, _LastRunId]]", list(repositories))
    runs = IngestionRun.objects.in_bulk([r.last_run_id for r in annotated if r.last_run_id])
    for repository in annotated:
        repository.last_run = runs.get(repository.last_run_id)


# The lists below leave out the rows of a repository being deleted (repos.deletion). The API scopes
# them by the repository's project, so the repository is joined already and the filter costs nothing.


def ingestion_run_list() -> QuerySet[IngestionRun]:
    return IngestionRun.objects.filter(repository__deleting_since__isnull=True)


def commit_list() -> QuerySet[Commit]:
    return Commit.objects.filter(repository__deleting_since__isnull=True)


def task_keys_attach(commits: Iterable[Commit]) -> None:
    """Give each commit the keys of its linked tasks, read for the whole page in one query.

    Plain values, not model instances: a page of commits is the API's busiest list, and building link,
    task and project objects for three strings per row cost more than the query itself.
    """
    commits = list(commits)
    keys: dict[int, list[str]] = {commit.pk: [] for commit in commits}
    links = (
        CommitTaskLink.objects.filter(commit_id__in=keys)
        .order_by("task__project__key", "task__number")
        .values_list("commit_id", "task__project__key", "task__number")
    )
    for commit_id, project_key, number in links:
        keys[commit_id].append(f"{project_key}-{number}")
    for commit in commits:
        commit.task_keys = keys[commit.pk]


def file_change_list() -> QuerySet[FileChange]:
    """File changes with their commit, joined for its sha only (its message may be large)."""
    fields = ("id", "commit__sha", "repository", "path", "old_path", "change_type", "added", "deleted")
    return (
        FileChange.objects.filter(repository__deleting_since__isnull=True)
        .select_related("commit")
        .only(*fields, "is_binary")
    )


def file_list() -> QuerySet[File]:
    return File.objects.filter(repository__deleting_since__isnull=True)


def push_candidates(*, repository_id: str, urls: Iterable[str]) -> QuerySet[Repository]:
    """The repositories a push webhook may be about: the one named by ``?repository=`` (an id), or
    those registered under one of the push's ``urls``. Anything but a plain id names none."""
    candidates = Repository.objects.filter(deleting_since__isnull=True).select_related("project")
    if repository_id:
        valid = repository_id.isascii() and repository_id.isdigit() and len(repository_id) < 19
        return candidates.filter(pk=int(repository_id)) if valid else candidates.none()
    return candidates.filter(source__in=list(urls))


def task_commit_links(*, task: Task) -> QuerySet[CommitTaskLink]:
    """Commits naming ``task``, newest link first, with their repository (idx_commit_task_links_task).

    Without the commits of a repository being deleted (repos.deletion): its repository is joined for the
    answer anyway, so leaving them out costs no extra query.
    """
    return (
        CommitTaskLink.objects.filter(task=task, commit__repository__deleting_since__isnull=True)
        .select_related("commit__repository")
        .order_by("-created_at", "-id")
    )
