"""Remote (https://) repositories: mirrored on the first run, fetched on the next, over real TLS."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from repos.models import Commit, IngestionRun, Repository
from repos.services import ingestion_request, repository_mirror_path, repository_register
from tests.factories import ProjectFactory
from tests.repos.gitrepo import GitRepo
from tests.repos.https_git import certificate_create, https_git_server

pytestmark = pytest.mark.django_db


def ingest(repository, django_capture_on_commit_callbacks) -> IngestionRun:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND)
    request.run.refresh_from_db()
    return request.run


def serve(work: GitRepo, bare: Path) -> None:
    """Publish ``work`` as the bare repository the test's https git server serves."""
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True)


def test_an_https_remote_is_mirrored_then_fetched(
    tmp_path: Path, settings, django_capture_on_commit_callbacks
):
    served = tmp_path / "served"
    work = GitRepo(tmp_path / "work")
    work.write("app.py", "print('v1')\n")
    work.commit("First")
    serve(work, served / "app.git")
    certificate = certificate_create(tmp_path)
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    settings.APM_GIT_CA_BUNDLE = str(certificate[1])
    settings.APM_GIT_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # the test's git server is on loopback

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
    assert (repository_mirror_path(repository=repository) / "HEAD").exists()


def test_an_untrusted_certificate_fails_the_run_with_the_reason(
    tmp_path: Path, settings, django_capture_on_commit_callbacks
):
    served = tmp_path / "served"
    work = GitRepo(tmp_path / "work")
    work.commit("Only", allow_empty=True)
    serve(work, served / "app.git")
    certificate = certificate_create(tmp_path)
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    settings.APM_GIT_ALLOWED_NETWORKS = ["127.0.0.0/8"]

    with https_git_server(served, certificate) as base:
        repository = repository_register(project=ProjectFactory(), source=f"{base}/app.git")
        run = ingest(repository, django_capture_on_commit_callbacks)

    assert run.status == "failed"
    assert "git clone failed" in run.error
    assert "certificate" in run.error.lower()
    assert not Commit.objects.exists()


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("https://127.0.0.1/team/app.git", "The host 127.0.0.1 resolves to 127.0.0.1, a loopback address"),
        ("https://localhost:8443/team/app.git", "a loopback address"),
        ("https://169.254.169.254/latest/app.git", "a link-local address"),
        ("https://10.1.2.3/team/app.git", "a private address"),
        ("https://[::ffff:192.168.0.1]/team/app.git", "a private address"),
    ],
)
def test_a_remote_inside_the_network_is_refused_at_registration(source: str, reason: str) -> None:
    with pytest.raises(ValidationError) as error:
        repository_register(project=ProjectFactory(), source=source)

    assert reason in error.value.message_dict["source"][0]
    assert "APM_GIT_ALLOWED_NETWORKS" in error.value.message_dict["source"][0]
    assert not Repository.objects.exists()


def test_a_remote_is_checked_again_before_every_fetch(
    tmp_path: Path, settings, django_capture_on_commit_callbacks
):
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    settings.APM_GIT_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    repository = repository_register(project=ProjectFactory(), source="https://127.0.0.1:9/team/app.git")
    settings.APM_GIT_ALLOWED_NETWORKS = []  # the operator closed the network since

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert run.status == "failed"
    assert "resolves to 127.0.0.1, a loopback address" in run.error
    assert not repository_mirror_path(repository=repository).exists()


def test_a_redirect_is_not_followed(tmp_path: Path, settings, django_capture_on_commit_callbacks):
    # A redirect would take git to a host the address check never saw (inside the network, perhaps).
    served = tmp_path / "served"
    work = GitRepo(tmp_path / "work")
    work.commit("Only", allow_empty=True)
    serve(work, served / "app.git")
    certificate = certificate_create(tmp_path)
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    settings.APM_GIT_CA_BUNDLE = str(certificate[1])
    settings.APM_GIT_ALLOWED_NETWORKS = ["127.0.0.0/8"]

    with https_git_server(served, certificate) as base:
        moved = repository_register(project=ProjectFactory(), source=f"{base}/moved/app.git")
        refused = ingest(moved, django_capture_on_commit_callbacks)
        direct = repository_register(project=ProjectFactory(), source=f"{base}/app.git")
        fetched = ingest(direct, django_capture_on_commit_callbacks)

    assert refused.status == "failed"
    assert "git clone failed" in refused.error
    assert "redirect" in refused.error.lower() or "301" in refused.error
    assert not Commit.objects.filter(repository=moved).exists()
    assert (fetched.status, fetched.commits_total) == ("succeeded", 1)  # the server itself works
