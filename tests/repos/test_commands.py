"""ingest_repo, ingest_all and the admin's "Ingest now", on real repositories."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from repos.models import Commit, IngestionRun, Repository
from tests.factories import ProjectFactory
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db(transaction=True)  # runs are enqueued on commit, as in production


@pytest.fixture
def repo(tmp_path: Path, settings) -> GitRepo:
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    settings.APM_INGEST_THREADS = 2  # committed data: the eager fan-out runs its chunks on two threads
    settings.APM_INGEST_CHUNK_COMMITS = 1
    repo = GitRepo(tmp_path / "service")
    for number in range(3):
        repo.write(f"module_{number}.py", "x = 1\n" * (number + 1))
        repo.commit(f"Add module {number}")
    return repo


def run_command(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_ingest_repo_registers_ingests_and_summarises(repo: GitRepo):
    ProjectFactory(key="APM")

    output = run_command("ingest_repo", str(repo.path), "--project", "apm")

    repository = Repository.objects.get()
    assert (repository.name, repository.kind, repository.project.key) == ("service", "local", "APM")
    assert Commit.objects.filter(repository=repository).count() == 3
    assert "service: 3 new commits, 3 file changes, +6/-0 lines, 3 files at" in output
    assert "on main in" in output

    repo.write("module_9.py", "y = 2\n")
    repo.commit("One more")
    assert "service: 1 new commits" in run_command("ingest_repo", str(repo.path), "--project", "APM")
    assert Repository.objects.count() == 1


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("--upload-pack=touch /tmp/apm-pwned", "cannot start with '-'"),
        ("/etc", "not under an allowed repository root"),
        ("https://user:secret@git.example.com/x.git", "cannot carry credentials"),
    ],
)
def test_ingest_repo_names_a_bad_source_and_writes_nothing(repo: GitRepo, source: str, message: str):
    ProjectFactory(key="APM")

    with pytest.raises(CommandError, match=message):
        run_command("ingest_repo", source, "--project", "APM")

    assert not Repository.objects.exists()
    assert not IngestionRun.objects.exists()


def test_ingest_repo_names_an_unknown_project(repo: GitRepo):
    with pytest.raises(CommandError, match="No project with key 'NOPE'"):
        run_command("ingest_repo", str(repo.path), "--project", "NOPE")


def test_ingest_repo_reports_a_failed_run(repo: GitRepo):
    ProjectFactory(key="APM")

    with pytest.raises(CommandError, match=r"failed .*branch 'missing' does not exist"):
        run_command("ingest_repo", str(repo.path), "--project", "APM", "--branch", "missing")

    assert IngestionRun.objects.get().status == "failed"


def test_ingest_all_runs_every_active_repository(repo: GitRepo, tmp_path: Path):
    other = GitRepo(tmp_path / "other")
    other.write("a.txt", "a\n")
    other.commit("a")
    project = ProjectFactory(key="APM")
    run_command("ingest_repo", str(repo.path), "--project", "APM")
    run_command("ingest_repo", str(other.path), "--project", "APM")
    Repository.objects.create(
        project=project, name="paused", kind="local", source=str(other.path) + "/", is_active=False
    )
    repo.write("new.py", "z = 3\n")
    repo.commit("New")

    output = run_command("ingest_all")

    assert "2 ingestion(s) queued, 0 already under way." in output
    assert Commit.objects.filter(repository__name="service").count() == 4
    assert not IngestionRun.objects.filter(repository__name="paused").exists()


def test_the_admin_action_ingests_now(repo: GitRepo, admin_client):
    project = ProjectFactory(key="APM")
    run_command("ingest_repo", str(repo.path), "--project", "APM")
    repository = Repository.objects.get(project=project)
    repo.write("later.py", "w = 4\n")
    repo.commit("Later")

    response = admin_client.post(
        reverse("admin:repos_repository_changelist"),
        {"action": "ingest_now", "_selected_action": [repository.pk]},
        follow=True,
    )

    assert response.status_code == 200
    latest = IngestionRun.objects.filter(repository=repository).latest("id")
    assert (latest.trigger, latest.status, latest.commits_total) == ("admin", "succeeded", 1)
    assert f"ingestion run {latest.pk} queued" in response.content.decode()


def test_the_admin_refuses_an_unsafe_source_on_the_form(admin_client, repo: GitRepo):
    project = ProjectFactory(key="APM")

    response = admin_client.post(
        reverse("admin:repos_repository_add"),
        {
            "project": project.pk,
            "name": "x",
            "source": "ext::sh -c id",
            "default_branch": "",
            "is_active": "on",
            "ingestion_runs-TOTAL_FORMS": "0",
            "ingestion_runs-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 200
    assert "Transport helpers" in response.content.decode()
    assert not Repository.objects.exists()


def _admin_add(admin_client, project, source: str, **fields: str):
    return admin_client.post(
        reverse("admin:repos_repository_add"),
        {
            "project": project.pk,
            "name": "x",
            "source": source,
            "default_branch": "",
            "ingestion_runs-TOTAL_FORMS": "0",
            "ingestion_runs-INITIAL_FORMS": "0",
            **fields,
        },
    )


def test_the_admin_refuses_a_remote_inside_the_network_on_the_form(admin_client):
    response = _admin_add(
        admin_client, ProjectFactory(key="APM"), "https://127.0.0.1/team/app.git", is_active="on"
    )

    assert response.status_code == 200
    assert "resolves to 127.0.0.1, a loopback address" in response.content.decode()
    assert not Repository.objects.exists()


def test_the_admin_registers_an_inactive_repository(admin_client, repo: GitRepo):
    response = _admin_add(admin_client, ProjectFactory(key="APM"), str(repo.path))  # the box left unticked

    assert response.status_code == 302
    assert Repository.objects.get().is_active is False
