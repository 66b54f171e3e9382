"""Remote (https://) repositories: mirrored on the first run, fetched on the next, over real TLS."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from repos.models import Commit, IngestionRun
from repos.services import ingestion_request, repository_register
from tests.factories import ProjectFactory
from tests.repos.gitrepo import GitRepo
from tests.repos.https_git import certificate_create, https_git_server

pytestmark = pytest.mark.django_db


def ingest(repository, django_capture_on_commit_callbacks) -> IngestionRun:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND)
    request.run.refresh_from_db()
    return request.run


def test_an_https_remote_is_mirrored_then_fetched(
    tmp_path: Path, settings, django_capture_on_commit_callbacks
):
    served = tmp_path / "served"
    work = GitRepo(tmp_path / "work")
    work.write("app.py", "print('v1')\n")
    work.commit("First")
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(served / "app.git")], check=True)
    certificate = certificate_create(tmp_path)
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    settings.APM_GIT_CA_BUNDLE = str(certificate[1])

    with https_git_server(served, certificate) as base:
        repository = repository_register(project=ProjectFactory(), source=f"{base}/app.git")
        first = ingest(repository, django_capture_on_commit_callbacks)
        work.write("app.py", "print('v2')\n")
        work.commit("Second")
        work.git("push", "-q", str(served / "app.git"), "main")
        second = ingest(repository, django_capture_on_commit_callbacks)

    assert (repository.kind, repository.name) == ("remote", "app")
    assert (first.status, first.error, first.commits_total) == ("succeeded", "", 1)
    assert (second.status, second.commits_total) == ("succeeded", 1)
    assert set(Commit.objects.filter(repository=repository).values_list("sha", flat=True)) == work.rev_list()
    assert (tmp_path / "workspace" / f"repository-{repository.pk}.git" / "HEAD").exists()


def test_an_untrusted_certificate_fails_the_run_with_the_reason(
    tmp_path: Path, settings, django_capture_on_commit_callbacks
):
    served = tmp_path / "served"
    work = GitRepo(tmp_path / "work")
    work.commit("Only", allow_empty=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(served / "app.git")], check=True)
    certificate = certificate_create(tmp_path)
    settings.APM_WORKSPACE = str(tmp_path / "workspace")

    with https_git_server(served, certificate) as base:
        repository = repository_register(project=ProjectFactory(), source=f"{base}/app.git")
        run = ingest(repository, django_capture_on_commit_callbacks)

    assert run.status == "failed"
    assert "git clone failed" in run.error
    assert "certificate" in run.error.lower()
    assert not Commit.objects.exists()
