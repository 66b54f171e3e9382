"""Mirrors are a cache that proves its source: a workspace mirror is used only when it is this
repository's mirror of this source; anything else at its place is rebuilt, never read."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from repos.ingestion.pipeline import repository_mirror_path
from repos.models import Commit, Repository
from repos.services import repository_register
from tests.factories import ProjectFactory
from tests.repos.gitrepo import GitRepo
from tests.repos.test_ingestion import assert_matches_git, ingest

pytestmark = pytest.mark.django_db


def small_repo(path: Path, label: str, commits: int = 3) -> GitRepo:
    repo = GitRepo(path)
    for number in range(commits):
        repo.write(f"{label}.txt", f"{label} {number}\n")
        repo.commit(f"{label} {number}")
    return repo


def test_ids_reused_after_a_database_reset_do_not_read_the_old_mirror(
    root: Path, django_capture_on_commit_callbacks
):
    """A database reset (or a test database beside a demo) hands out the same ids again."""
    first = small_repo(root / "first", "first")
    second = small_repo(root / "second", "second", commits=2)
    old = repository_register(project=ProjectFactory(), source=str(first.path))
    ingest(old, django_capture_on_commit_callbacks)
    old_mirror = repository_mirror_path(repository=old)
    reused_id = old.pk
    Repository.objects.filter(pk=reused_id).delete()  # the mirror stays in the workspace

    reset = Repository.objects.create(
        pk=reused_id, project=ProjectFactory(), name="second", kind="local", source=str(second.path)
    )
    run = ingest(reset, django_capture_on_commit_callbacks)

    assert (run.status, run.error) == ("succeeded", "")
    assert old_mirror.exists()
    assert repository_mirror_path(repository=reset) != old_mirror
    assert_matches_git(second, reset)
    assert not Commit.objects.filter(repository=reset, message__startswith="first").exists()


def test_a_mirror_of_another_source_at_its_place_is_rebuilt(root: Path, django_capture_on_commit_callbacks):
    """Two installations sharing one workspace, or a mirror copied by hand: the content is not trusted."""
    ours = small_repo(root / "ours", "ours")
    theirs = small_repo(root / "theirs", "theirs", commits=5)
    repository = repository_register(project=ProjectFactory(), source=str(ours.path))
    foreign = repository_register(project=ProjectFactory(), source=str(theirs.path))
    ingest(foreign, django_capture_on_commit_callbacks)
    mirror = repository_mirror_path(repository=repository)
    shutil.copytree(repository_mirror_path(repository=foreign), mirror)
    # Even carrying our key, a mirror of another origin is not ours.
    subprocess.run(
        ["git", "--git-dir", str(mirror), "config", "apm.repository", repository.mirror_key], check=True
    )

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert (run.status, run.commits_done) == ("succeeded", 3)
    assert_matches_git(ours, repository)
    origin = subprocess.run(
        ["git", "--git-dir", str(mirror), "config", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert origin.stdout.strip().startswith(str(ours.path))


def test_a_mirror_without_the_repository_key_is_rebuilt(root: Path, django_capture_on_commit_callbacks):
    ours = small_repo(root / "ours", "ours")
    repository = repository_register(project=ProjectFactory(), source=str(ours.path))
    ingest(repository, django_capture_on_commit_callbacks)
    mirror = repository_mirror_path(repository=repository)
    subprocess.run(["git", "--git-dir", str(mirror), "config", "apm.repository", "someone-else"], check=True)
    ours.write("ours.txt", "one more\n")
    ours.commit("One more")

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert (run.status, run.commits_done) == ("succeeded", 1)
    assert_matches_git(ours, repository)
    key = subprocess.run(
        ["git", "--git-dir", str(mirror), "config", "apm.repository"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert key.stdout.strip() == repository.mirror_key


def test_a_restored_database_meets_a_newer_mirror_and_catches_up(
    root: Path, django_capture_on_commit_callbacks
):
    """A backup restored: the repository (and its key) come back older than the workspace's mirror."""
    ours = small_repo(root / "ours", "ours")
    repository = repository_register(project=ProjectFactory(), source=str(ours.path))
    ingest(repository, django_capture_on_commit_callbacks)
    backup = Repository.objects.get(pk=repository.pk)
    ours.write("ours.txt", "after the backup\n")
    ours.commit("After the backup")
    ingest(repository, django_capture_on_commit_callbacks)
    # The restore: the newer commit's rows and tip are gone from the database, the mirror has them.
    Commit.objects.filter(repository=repository, message__startswith="After the backup").delete()
    Repository.objects.filter(pk=repository.pk).update(last_ingested_sha=backup.last_ingested_sha)

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert (run.status, run.commits_done) == ("succeeded", 1)
    assert_matches_git(ours, repository)
