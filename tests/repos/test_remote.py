"""Remote (https://) repositories: mirrored on the first run, fetched on the next, over real TLS."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ValidationError

from repos.git import GitError, git_run
from repos.ingestion.pipeline import repository_mirror_path
from repos.models import Commit, IngestionRun, Repository
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


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        # Python's resolver fails on a zone id and git's connects: a failure must not let a URL through.
        ("https://[::1%25lo]/x.git", "cannot contain '%'"),
        ("https://[::ffff:127.0.0.1%25lo]/x.git", "cannot contain '%'"),
        ("https://[fe80::1%25lo]/x.git", "cannot contain '%'"),
        ("https://%6c%6fcalhost/x.git", "cannot contain '%'"),
        ("https://localhost./x.git", "without its trailing dot"),
        ("https://127.1/x.git", "in its usual dotted form"),
        ("https://2130706433/x.git", "in its usual dotted form"),
        ("https://0x7f.0.0.1/x.git", "in its usual dotted form"),
        ("https://nowhere.invalid/x.git", "The host nowhere.invalid could not be resolved"),
    ],
)
def test_a_host_the_address_check_cannot_judge_is_refused(source: str, reason: str) -> None:
    with pytest.raises(ValidationError) as error:
        repository_register(project=ProjectFactory(), source=source)

    assert reason in error.value.message_dict["source"][0]
    assert not Repository.objects.exists()


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("https://[::1%25lo]:9/x.git", "cannot contain '%'"),
        ("https://localhost.:9/x.git", "without its trailing dot"),
        ("https://nowhere.invalid/x.git", "could not be resolved"),
    ],
)
def test_a_run_refuses_such_a_host_before_git_connects(
    source: str, reason: str, tmp_path: Path, settings, django_capture_on_commit_callbacks
):
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    # Stored as an earlier release registered it: the run is where it is stopped now.
    repository = Repository.objects.create(project=ProjectFactory(), name="x", kind="remote", source=source)

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert run.status == "failed"
    assert reason in run.error
    assert not repository_mirror_path(repository=repository).exists()


def _resolver(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    """A stand-in for DNS in APM's check (``repos.git.host_addresses``); git resolves on its own."""

    def host_addresses(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"{host} does not resolve")
        return answers[host]

    return host_addresses


def test_a_refusal_names_the_kind_of_address_not_what_a_name_resolves_to(
    tmp_path: Path, settings, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(
        "repos.git.host_addresses", _resolver({"git.corp.example": ["140.82.112.3", "10.1.2.3"]})
    )
    settings.APM_WORKSPACE = str(tmp_path / "workspace")

    with pytest.raises(ValidationError) as error:
        repository_register(project=ProjectFactory(), source="https://git.corp.example/team/app.git")
    settings.APM_GIT_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    repository = repository_register(project=ProjectFactory(), source="https://git.corp.example/team/app.git")
    settings.APM_GIT_ALLOWED_NETWORKS = []
    run = ingest(repository, django_capture_on_commit_callbacks)

    message = error.value.message_dict["source"][0]
    assert message.startswith("The host git.corp.example resolves to a private address; ")
    assert "APM_GIT_ALLOWED_NETWORKS" in message
    assert run.status == "failed"
    assert "The host git.corp.example resolves to a private address" in run.error
    assert "10.1.2.3" not in message + run.error
    # Operators find the address in the log.
    logged = [record.getMessage() for record in caplog.records if record.name == "repos.git"]
    assert len(logged) == 2
    assert all("git_remote_refused" in line and "10.1.2.3" in line for line in logged)


def _named_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / "named-key.pem", directory / "named-cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


@pytest.mark.parametrize("spelling", ["git.apm.test", "Git.APM.test"])
def test_git_connects_to_the_address_the_check_passed(
    spelling: str, tmp_path: Path, settings, monkeypatch, django_capture_on_commit_callbacks
):
    # The system resolver knows no git.apm.test; APM's check is told it is 127.0.0.1. git reaches the
    # server only if it connects to the address checked instead of resolving the name again, which is
    # what keeps a DNS answer that changes after the check (rebinding) from taking git elsewhere.
    monkeypatch.setattr("repos.git.host_addresses", _resolver({"git.apm.test": ["127.0.0.1"]}))
    served = tmp_path / "served"
    work = GitRepo(tmp_path / "work")
    work.write("app.py", "print('v1')\n")
    work.commit("First")
    serve(work, served / "app.git")
    certificate = _named_certificate(tmp_path, "git.apm.test")
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    settings.APM_GIT_CA_BUNDLE = str(certificate[1])
    settings.APM_GIT_ALLOWED_NETWORKS = ["127.0.0.0/8"]

    with https_git_server(served, certificate) as base:
        source = f"https://{spelling}:{urlsplit(base).port}/app.git"
        repository = repository_register(project=ProjectFactory(), source=source)
        first = ingest(repository, django_capture_on_commit_callbacks)
        work.write("app.py", "print('v2')\n")
        work.commit("Second")
        work.git("push", "-q", str(served / "app.git"), "main")
        second = ingest(repository, django_capture_on_commit_callbacks)  # a fetch, pinned the same way

    assert (first.status, first.error, first.commits_total) == ("succeeded", "", 1)
    assert (second.status, second.error, second.commits_total) == ("succeeded", "", 1)
    assert set(Commit.objects.filter(repository=repository).values_list("sha", flat=True)) == work.rev_list()


def test_ssh_connects_to_the_address_the_check_passed(tmp_path: Path, settings, monkeypatch):
    # An ssh client that writes down how git called it, so no ssh server is needed.
    settings.APM_ALLOW_SSH = True
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    monkeypatch.setattr("repos.git.host_addresses", _resolver({"git.example.com": ["140.82.112.3"]}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    called = tmp_path / "ssh-arguments"
    (bin_dir / "ssh").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {called}\nexit 1\n')
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    url = "ssh://git@git.example.com:2222/team/app.git"

    with pytest.raises(GitError):
        git_run("ls-remote", "--", url, remote=url, timeout=60)

    arguments = called.read_text().splitlines()
    assert "HostName=140.82.112.3" in arguments
    assert "HostKeyAlias=[git.example.com]:2222" in arguments  # known_hosts entries still match
    assert "BatchMode=yes" in arguments
    assert "git@git.example.com" in arguments
