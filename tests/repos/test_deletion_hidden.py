"""A repository being deleted is gone from every figure at once, cached or not (repos.deletion).

The attacker's repro: a repository whose commits say "refs DATA-1" is deleted through the API while no
worker runs, so it stays marked with all its rows. Every selector, panel, report and admin list must
then answer as if it had never been ingested. The figures of project DATA are read three times: with
its live repository only (the baseline), after a second repository was ingested (each figure must
move, or the comparison proves nothing), and after that second repository's deletion was requested
(each figure must be the baseline again, cached ones included: the request drops the project's cache).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import redis
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from insights.analytics import project_health, project_last_activity
from insights.code import change_coupling, contributor_stats, file_hotspots, last_commit_at
from insights.selectors import (
    code_figures_cached,
    ingestion_runs_recent,
    project_commits_recent_cached,
    project_health_cached,
    project_history_start,
    project_portfolio_cached,
    project_summary_cached,
    repository_counts_cached,
)
from projects.models import Membership, Project
from projects.services import project_cache_invalidate
from reports.digest import commits_for_export, project_digest
from repos import deletion
from repos.deletion import repository_delete_request
from repos.models import Commit, CommitTaskLink, File, FileChange, IngestionRun, PushDelivery, Repository
from repos.selectors import task_commit_links
from tasks.models import Task
from tests.factories import (
    CommitFactory,
    CommitTaskLinkFactory,
    FileChangeFactory,
    FileFactory,
    IngestionRunFactory,
    MembershipFactory,
    ProjectFactory,
    RepositoryFactory,
    TaskFactory,
    UserFactory,
)
from tests.faults.test_broker_down import QUEUE, publishing_to
from tests.monitoring.test_cache_outage import RedisServer, redis_server  # noqa: F401 (a fixture)

DAY = datetime.timedelta(days=1)
# The panels whose figures come from commits, file changes or links (the others read tasks only).
COMMIT_PANELS = ("health", "hotspots", "contributors", "coupling", "commits")


def ingest(
    repository: Repository, *, ages: list[datetime.timedelta], email: str, paths: tuple[str, str]
) -> list[Commit]:
    """What an ingestion leaves: commits ``ages`` ago, each changing both ``paths``, the files, a run."""
    now = timezone.now()
    commits = [
        CommitFactory(repository=repository, timestamp=now - age, authored_at=now - age, author_email=email)
        for age in ages
    ]
    for commit in commits:
        for path in paths:
            FileChangeFactory(commit=commit, path=path)
    for path in paths:
        FileFactory(repository=repository, path=path)
    IngestionRunFactory(repository=repository)
    return commits


# The moment a figure was computed: not a figure (health's checked_at, the digest's generated_at).
MOMENTS = ("checked_at", "generated_at")


def timeless(value: Any) -> Any:
    """``value`` without the moments it was computed at, at any depth."""
    if isinstance(value, dict):
        return {key: timeless(item) for key, item in value.items() if key not in MOMENTS}
    if isinstance(value, list):
        return [timeless(item) for item in value]
    return value


def figures(
    *, project: Project, repository: Repository, staff: Any, api: APIClient, page: Client
) -> dict[str, Any]:
    """Every figure of ``project`` that reads commits, file changes, files, links or runs."""
    task_1, task_2 = (Task.objects.get(project=project, number=n) for n in (1, 2))
    found: dict[str, Any] = {
        # repos.selectors and the task's commits in the API (the repro's first point).
        "task_commit_links": [link.pk for link in task_commit_links(task=task_1)]
        + [link.pk for link in task_commit_links(task=task_2)],
        "api_task_commits": [api.get(f"/api/v1/tasks/DATA-{n}/commits/").json() for n in (1, 2)],
        "api_summary": api.get("/api/v1/projects/DATA/summary/").json(),
        # insights.selectors, cached.
        "summary": project_summary_cached(project=project),
        "portfolio": project_portfolio_cached(),
        "commits_recent": project_commits_recent_cached(project=project),
        "health_cached": project_health_cached(project=project),
        **{
            f"code_{figure}": code_figures_cached(project=project, figure=figure, days=90, limit=10)
            for figure in ("hotspots", "coupling", "contributors")
        },
        "repository_counts": repository_counts_cached(repository=repository),
        # insights.selectors, not cached.
        "history_start": project_history_start(project=project),
        "runs_recent": [run.pk for run in ingestion_runs_recent(user=staff)],
        # insights.analytics and insights.code, as the reports call them.
        "health": project_health(project=project),
        "last_activity": project_last_activity(project=project),
        "last_commit_at": last_commit_at(project=project),
        "hotspots": file_hotspots(project=project),
        "coupling": change_coupling(project=project),
        "contributors": contributor_stats(project=project),
        # reports.digest: the digest (less the moment it was made) and the commits export.
        "digest": project_digest(project=project),
        "export": list(commits_for_export(project=project, filters={})),
    }
    for name in COMMIT_PANELS:
        response = page.get(f"/projects/DATA/panels/{name}/")
        assert response.status_code == 200, name
        found[f"panel_{name}"] = response.content.decode()
    return timeless(found)


@pytest.mark.django_db(transaction=True)
def test_a_repository_being_deleted_leaves_every_figure_at_once(redis_server: RedisServer):  # noqa: F811
    project = ProjectFactory(key="DATA", name="Data")
    owner = UserFactory(username="data-owner")
    staff = UserFactory(username="data-staff", is_staff=True)
    MembershipFactory(project=project, user=owner, role=Membership.Role.OWNER)
    TaskFactory(project=project, title="Named only by the deleted repository")  # DATA-1
    TaskFactory(project=project, title="Named by both repositories")  # DATA-2
    task_1, task_2 = (Task.objects.get(project=project, number=n) for n in (1, 2))
    api = APIClient()
    api.force_authenticate(user=owner)
    page = Client()
    page.force_login(owner)

    live = RepositoryFactory(project=project, name="live")
    kept = ingest(
        live,
        ages=[DAY, 5 * DAY, 10 * DAY, 40 * DAY, 60 * DAY],
        email="ada@example.com",
        paths=("a.py", "b.py"),
    )
    CommitTaskLinkFactory(commit=kept[0], task=task_2)
    read = {"project": project, "repository": live, "staff": staff, "api": api, "page": page}
    baseline = figures(**read)

    doomed = RepositoryFactory(project=project, name="doomed")
    # The latest and the oldest commits of the project, by another author, on other files.
    gone = ingest(
        doomed,
        ages=[datetime.timedelta(hours=1), 2 * DAY, 3 * DAY, 300 * DAY],
        email="eve@example.com",
        paths=("c.py", "d.py"),
    )
    CommitTaskLinkFactory(commit=gone[0], task=task_1)  # "refs DATA-1"
    for task in (task_1, task_2):  # "refs DATA-1 DATA-2"
        CommitTaskLinkFactory(commit=gone[1], task=task)
    PushDelivery.objects.create(repository=doomed, delivery_id="d1", body_sha256="0" * 64)
    project_cache_invalidate(project_id=project.pk)  # what the end of an ingestion does
    ingested = figures(**read)
    unmoved = [name for name in baseline if name != "repository_counts" and ingested[name] == baseline[name]]
    assert unmoved == []  # each figure counts the second repository, so the comparison below means something

    raw = redis.Redis(port=redis_server.port)
    # A real broker and no worker: the repository stays marked with every row, as in the repro.
    with publishing_to(redis_server.url):
        response = api.delete(f"/api/v1/repositories/{doomed.pk}/")
        assert response.status_code == 202, response.content
        assert raw.llen(QUEUE) == 1  # the deletion waits for a worker
        doomed.refresh_from_db()
        assert doomed.deleting_since is not None
        assert Commit.objects.filter(repository=doomed).count() == len(gone)  # nothing deleted yet

        after = figures(**read)
        changed = {name: (baseline[name], after[name]) for name in baseline if after[name] != baseline[name]}
        assert sorted(changed) == [], changed

        # Asked again (a retried request): the same answer, the same figures.
        assert api.delete(f"/api/v1/repositories/{doomed.pk}/").status_code == 202
        assert figures(**read) == after


ADMIN_LISTS = {
    "commit": Commit,
    "filechange": FileChange,
    "file": File,
    "ingestionrun": IngestionRun,
    "committasklink": CommitTaskLink,
    "pushdelivery": PushDelivery,
}


def _rows_of(model: type, repository: Repository) -> list[int]:
    lookup = "commit__repository" if model is CommitTaskLink else "repository"
    return list(model._default_manager.filter(**{lookup: repository}).values_list("pk", flat=True))


@pytest.mark.django_db
def test_the_admin_shows_no_row_of_a_repository_being_deleted(
    admin_client, django_capture_on_commit_callbacks
):
    project = ProjectFactory(key="DATA")
    task = TaskFactory(project=project)
    live, doomed = (
        RepositoryFactory(project=project, name="live"),
        RepositoryFactory(project=project, name="doomed"),
    )
    RepositoryFactory(project=project, name="spare")  # a list's filter shows from two choices on
    for repository in (live, doomed):
        commits = ingest(repository, ages=[DAY], email="ada@example.com", paths=("a.py", "b.py"))
        CommitTaskLinkFactory(commit=commits[0], task=task)
        PushDelivery.objects.create(
            repository=repository, delivery_id=f"d{repository.pk}", body_sha256="0" * 64
        )
    with django_capture_on_commit_callbacks(execute=False):  # no worker: the repository stays marked
        repository_delete_request(repository=doomed)

    for name, model in ADMIN_LISTS.items():
        changelist = admin_client.get(f"/admin/repos/{name}/")
        assert changelist.status_code == 200, name
        shown = {row.pk for row in changelist.context["cl"].result_list}
        assert shown == set(_rows_of(model, live)), name
        hidden = _rows_of(model, doomed)[0]
        # Its change page is gone too: the admin says so and sends the operator back.
        assert admin_client.get(f"/admin/repos/{name}/{hidden}/change/").status_code == 302, name
        assert admin_client.get(f"/admin/repos/{name}/{_rows_of(model, live)[0]}/change/").status_code == 200
    # The repository filters offer the live repository only.
    commits = admin_client.get("/admin/repos/commit/")
    changelist = commits.context["cl"]
    offered = " ".join(
        str(choice["display"]) for spec in changelist.filter_specs for choice in spec.choices(changelist)
    )
    assert "live" in offered
    assert "doomed" not in offered
    # The task's page lists the commits that name it, the live one only.
    task_page = admin_client.get(f"/admin/tasks/task/{task.pk}/change/")
    inline = next(
        formset
        for formset in task_page.context["inline_admin_formsets"]
        if formset.formset.model is CommitTaskLink
    )
    assert [form.instance.commit.repository_id for form in inline.formset.forms] == [live.pk]
    # The repository list hides it as well (repos.admin.RepositoryAdmin).
    listed = [row.pk for row in admin_client.get("/admin/repos/repository/").context["cl"].result_list]
    assert live.pk in listed
    assert doomed.pk not in listed


@pytest.mark.django_db(transaction=True)
def test_a_mark_undone_by_the_broker_refusal_brings_the_repository_back_into_cached_figures():
    """The broker refuses the deletion's message after the mark was committed: figures cached in that
    moment leave the repository out, and undoing the mark drops them."""
    project = ProjectFactory(key="DATA")
    repositories = [RepositoryFactory(project=project, name=name) for name in ("live", "refused")]
    for repository in repositories:
        ingest(repository, ages=[DAY], email="ada@example.com", paths=("a.py", "b.py"))
    refused = repositories[1]
    Repository.objects.filter(pk=refused.pk).update(deleting_since=timezone.now())  # the mark, committed
    project_cache_invalidate(project_id=project.pk)
    assert project_summary_cached(project=project)["repositories"] == 1  # cached while it stood

    deletion._mark_discard(refused.pk)  # the broker's refusal undoes it (repos.deletion)

    assert project_summary_cached(project=project)["repositories"] == 2
    assert project_summary_cached(project=project)["commits"] == 2
