"""Local sources stay inside APM_REPO_ROOTS with everything git reads through them.

Each escape is built with real repositories in two directories: ``allowed`` (the only root) and
``outside``, which holds a repository with a secret commit and file. A repository under the root that
reaches the outside one (a ``.git`` symlink, a ``commondir``, ``objects/info/alternates``, a symlinked
pack) is refused at registration, and a run refuses it when the change is made after registration.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from apm.services import api_token_create
from projects.models import Membership
from repos.git import source_parse
from repos.models import Commit, File, IngestionRun, Repository
from repos.services import ingestion_request, repository_register
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db


@dataclass
class Roots:
    allowed: Path
    outside: GitRepo
    secret: str  # the outside repository's commit


@pytest.fixture
def roots(tmp_path: Path, settings) -> Roots:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    settings.APM_REPO_ROOTS = [str(allowed)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    outside = GitRepo(tmp_path / "outside" / "private")
    outside.write("secret.txt", "not for APM\n")
    secret = outside.commit("Secret history")
    return Roots(allowed=allowed, outside=outside, secret=secret)


def _dot_git_symlink(repo: Path, roots: Roots) -> None:
    """``.git`` is a symlink to the outside repository's git directory."""
    if (repo / ".git").exists():
        shutil.rmtree(repo / ".git")
    (repo / ".git").symlink_to(roots.outside.path / ".git")


def _commondir(repo: Path, roots: Roots) -> None:
    """The git directory's ``commondir`` names the outside one: its refs and objects are read."""
    (repo / ".git" / "commondir").write_text(f"{roots.outside.path / '.git'}\n")


def _alternates(repo: Path, roots: Roots) -> None:
    """``objects/info/alternates`` names the outside object store, and a branch points into it."""
    info = repo / ".git" / "objects" / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "alternates").write_text(f"{roots.outside.path / '.git' / 'objects'}\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text(f"{roots.secret}\n")


def _alternates_of_alternates(repo: Path, roots: Roots) -> None:
    """A store under the root whose own alternates name the outside one (git follows the chain)."""
    relay = roots.allowed / "relay"
    GitRepo(relay)  # a repository under the root, with an object store of its own
    relay_info = relay / ".git" / "objects" / "info"
    relay_info.mkdir(parents=True, exist_ok=True)
    # Relative, as git clone --shared writes them: read from the store that names them.
    (relay_info / "alternates").write_text("../../../../outside/private/.git/objects\n")
    info = repo / ".git" / "objects" / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "alternates").write_text(f'"{relay / ".git" / "objects"}"\n')
    (repo / ".git" / "refs" / "heads" / "main").write_text(f"{roots.secret}\n")


def _symlinked_pack(repo: Path, roots: Roots) -> None:
    """A pack of the outside repository linked into the object store, and a branch pointing into it."""
    roots.outside.git("repack", "-q", "-a", "-d")
    pack = repo / ".git" / "objects" / "pack"
    pack.mkdir(parents=True, exist_ok=True)
    for file in (roots.outside.path / ".git" / "objects" / "pack").iterdir():
        (pack / file.name).symlink_to(file)
    (repo / ".git" / "refs" / "heads" / "main").write_text(f"{roots.secret}\n")


ESCAPES: dict[str, tuple[Callable[[Path, Roots], None], str]] = {
    "dot-git-symlink": (_dot_git_symlink, "its git directory lies outside the allowed repository roots"),
    "commondir": (_commondir, "its common git directory (commondir) lies outside"),
    "alternates": (_alternates, "objects/info/alternates names an object store outside"),
    "alternates-of-alternates": (_alternates_of_alternates, "objects/info/alternates names an object store"),
    "symlinked-pack": (_symlinked_pack, "holds a symbolic link to a place outside"),
}


def _clean_repo(roots: Roots) -> GitRepo:
    repo = GitRepo(roots.allowed / "project")
    repo.write("README.md", "# Project\n")
    repo.commit("Clean history")
    return repo


def _ingest(repository: Repository, django_capture_on_commit_callbacks) -> IngestionRun:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND)
    request.run.refresh_from_db()
    return request.run


def _nothing_from_outside(roots: Roots) -> None:
    assert not Commit.objects.filter(sha=roots.secret).exists()
    assert not Commit.objects.filter(message__contains="Secret history").exists()
    assert not File.objects.filter(path="secret.txt").exists()


@pytest.mark.parametrize("escape", list(ESCAPES))
def test_a_repository_reaching_outside_the_roots_is_refused_at_registration(roots: Roots, escape: str):
    build, reason = ESCAPES[escape]
    repo = GitRepo(roots.allowed / "project")
    build(repo.path, roots)

    with pytest.raises(ValidationError) as error:
        repository_register(project=ProjectFactory(), source=str(repo.path))

    assert reason in error.value.message_dict["source"][0]
    assert str(roots.outside.path) not in error.value.message_dict["source"][0]
    assert not Repository.objects.exists()


@pytest.mark.parametrize("escape", list(ESCAPES))
def test_a_run_refuses_a_repository_changed_to_reach_outside_after_registration(
    roots: Roots, escape: str, django_capture_on_commit_callbacks
):
    build, reason = ESCAPES[escape]
    repo = _clean_repo(roots)
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    first = _ingest(repository, django_capture_on_commit_callbacks)
    assert (first.status, first.commits_total) == ("succeeded", 1)

    build(repo.path, roots)  # the repository's owner changes its files afterwards
    run = _ingest(repository, django_capture_on_commit_callbacks)

    assert run.status == "failed"
    assert reason in run.error
    _nothing_from_outside(roots)
    messages = Commit.objects.values_list("message", flat=True)
    assert [message.strip() for message in messages] == ["Clean history"]


def test_a_first_run_refuses_a_repository_changed_between_registration_and_ingestion(
    roots: Roots, django_capture_on_commit_callbacks
):
    repo = _clean_repo(roots)
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    _dot_git_symlink(repo.path, roots)

    run = _ingest(repository, django_capture_on_commit_callbacks)

    assert run.status == "failed"
    assert "its git directory lies outside" in run.error
    _nothing_from_outside(roots)
    assert not Commit.objects.exists()


def test_alternates_and_symlinks_inside_the_roots_are_accepted(roots: Roots):
    shared = GitRepo(roots.allowed / "shared")
    shared.write("lib.py", "x = 1\n")
    shared.commit("Shared history")
    borrower = GitRepo(roots.allowed / "borrower")
    (borrower.path / ".git" / "objects" / "info" / "alternates").write_text(
        "../../../shared/.git/objects\n# a comment, then an empty line\n\n"
    )
    (roots.allowed / "link").symlink_to(shared.path)

    assert source_parse(str(borrower.path)).location == str(borrower.path / ".git")
    assert source_parse(str(roots.allowed / "link")).location == str(shared.path / ".git")


def test_the_refusal_of_a_path_outside_the_roots_names_the_roots(roots: Roots, settings):
    other = roots.allowed.parent / "second-root"
    other.mkdir()
    settings.APM_REPO_ROOTS = [str(roots.allowed), str(other)]
    project = ProjectFactory(key="SHOP")

    with pytest.raises(CommandError) as error:
        call_command("ingest_repo", str(roots.outside.path), "--project", "SHOP")

    assert "is not under an allowed repository root" in str(error.value)
    assert f"APM_REPO_ROOTS: {roots.allowed}, {other}" in str(error.value)
    assert not Repository.objects.filter(project=project).exists()


def test_only_staff_learn_the_roots_from_the_api(roots: Roots):
    project = ProjectFactory(key="SHOP")
    owner = UserFactory(username="owner")
    MembershipFactory(project=project, user=owner, role=Membership.Role.OWNER)
    staff = UserFactory(username="operator", is_staff=True)

    def post(user) -> dict:  # type: ignore[no-untyped-def]
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user, name='t')[1]}")
        response = client.post("/api/v1/repositories/", {"project": "SHOP", "source": "/etc"}, format="json")
        assert response.status_code == 400
        return response.json()

    assert str(roots.allowed) in str(post(staff))
    assert str(roots.allowed) not in str(post(owner))
