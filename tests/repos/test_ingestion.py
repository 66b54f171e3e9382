"""Ingestion compared with git's own answers, on repositories the tests build.

What APM stores (commits, parents, file changes with their types and line counts, the tree at the tip
with sizes and lines) must be what ``git rev-list``, ``git log --numstat`` and ``git ls-tree`` say.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

import repos.ingestion.pipeline
from benchmarks.repogen import repository_create, wide_commit_stream
from repos.ingestion.pipeline import ingestion_commits_chunk
from repos.models import Commit, File, FileChange, IngestionRun, Repository
from repos.services import ingestion_request, repository_register
from tests.factories import ProjectFactory
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db


def rich_repo(path: Path) -> GitRepo:
    """Merges (one an octopus), a rename, binary files, odd names, an empty commit, a non-UTF-8 commit,
    a deletion, a symlink and a submodule entry."""
    repo = GitRepo(path)
    repo.write("README.md", "# Demo\n\nA project.\n")
    repo.write("src/app.py", "".join(f"line {n}\n" for n in range(40)))
    repo.write("name with spaces.txt", "spaces\n")
    repo.write("ünïcödé.txt", "unicode\n")
    repo.write("new\nline.txt", "a newline in the name\n")
    repo.write("logo.bin", b"\x89PNG\0\0\x01\x02" * 50)
    repo.write("no-final-newline.txt", "one\ntwo")
    (path / "link").symlink_to("README.md")
    repo.commit("Initial import")
    # A rename with a small edit.
    repo.git("mv", "src/app.py", "src/main.py")
    repo.write("src/main.py", "".join(f"line {n}\n" for n in range(40)) + "one more\n")
    repo.commit("Rename app to main")
    repo.commit("An empty commit", allow_empty=True)
    # A commit whose message and author are Latin-1 bytes, not UTF-8, with no encoding header.
    tree = repo.git("write-tree").decode().strip()
    env = {key.encode(): value.encode() for key, value in repo.env().items()}
    env[b"GIT_AUTHOR_NAME"] = b"Jos\xe9 Garc\xeda"
    head = repo.head()
    sha = subprocess_bytes(
        repo, ["commit-tree", tree, "-p", head], input=b"Caf\xe9 cr\xe8me\n\nLatin-1 body\n", env=env
    )
    repo.git("update-ref", "refs/heads/main", sha)
    # A feature branch merged with a merge commit.
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("feature.txt", "feature work\n")
    repo.commit("Feature work")
    repo.git("checkout", "-q", "main")
    repo.write("README.md", "# Demo\n\nA project, merged.\n")
    repo.commit("Main moves on")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
    # An octopus merge of two more branches.
    for branch in ("left", "right"):
        repo.git("checkout", "-q", "-b", branch, "main")
        repo.write(f"{branch}.txt", f"{branch}\n")
        repo.commit(f"{branch} side")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "Octopus", "left", "right")
    # A deletion, and a submodule entry (a gitlink) recorded directly in the index.
    repo.git("rm", "-q", "name with spaces.txt")
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{head},vendor/lib")
    repo.git("commit", "-q", "-m", "Delete a file, add a submodule entry")
    return repo


def subprocess_bytes(repo: GitRepo, args: list[str], *, input: bytes, env: dict) -> str:
    return (
        subprocess.run(
            ["git", "-C", str(repo.path), *args], check=True, capture_output=True, input=input, env=env
        )
        .stdout.decode()
        .strip()
    )


def ingest(repository: Repository, django_capture_on_commit_callbacks, **options) -> IngestionRun:
    with django_capture_on_commit_callbacks(execute=True):
        request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND, **options)
    request.run.refresh_from_db()
    return request.run


def assert_matches_git(repo: GitRepo, repository: Repository) -> None:
    commits = {commit.sha: commit for commit in Commit.objects.filter(repository=repository)}
    assert set(commits) == repo.rev_list()
    assert {sha: commit.parents for sha, commit in commits.items()} == repo.parents()
    numstat, statuses = repo.numstat(), repo.name_status()
    for sha, commit in commits.items():
        changes = {change.path.encode(): change for change in FileChange.objects.filter(commit=commit)}
        assert {path: (c.added, c.deleted) for path, c in changes.items()} == numstat[sha], sha
        assert {path: c.change_type for path, c in changes.items()} == statuses[sha], sha
        assert commit.additions == sum(added or 0 for added, _ in numstat[sha].values())
        assert commit.deletions == sum(deleted or 0 for _, deleted in numstat[sha].values())
        assert commit.files_changed == len(numstat[sha])
        assert commit.is_merge == (len(commit.parents) > 1)
    tree = repo.tree()
    files = {file.path.encode(): file for file in File.objects.filter(repository=repository)}
    assert {path: file.size for path, file in files.items()} == {
        path: size or 0 for path, (_, size) in tree.items()
    }


def test_full_ingestion_matches_git(root: Path, django_capture_on_commit_callbacks):
    repo = rich_repo(root / "rich")
    project = ProjectFactory()
    repository = repository_register(project=project, source=str(repo.path))

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert (run.status, run.error) == (IngestionRun.Status.SUCCEEDED, "")
    assert run.commits_total == run.commits_done == len(repo.rev_list())
    numstat = repo.numstat()
    assert run.lines_added == sum(added or 0 for changes in numstat.values() for added, _ in changes.values())
    assert run.lines_deleted == sum(
        deleted or 0 for changes in numstat.values() for _, deleted in changes.values()
    )
    assert run.to_sha == repo.head("main")
    assert_matches_git(repo, repository)
    repository.refresh_from_db()
    assert (repository.last_ingested_sha, repository.default_branch) == (repo.head("main"), "main")
    assert set(run.timings) >= {"mirror", "plan", "commits", "files", "finish"}


def test_details_of_commits_and_files(root: Path, django_capture_on_commit_callbacks):
    repo = rich_repo(root / "rich")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)

    latin = Commit.objects.get(repository=repository, message__startswith="Caf")
    assert latin.message == "Café crème\n\nLatin-1 body\n"
    assert latin.author_name == "José García"
    rename = FileChange.objects.get(repository=repository, path="src/main.py", change_type="R")
    assert (rename.old_path, rename.added, rename.deleted) == ("src/app.py", 1, 0)
    binary = FileChange.objects.get(repository=repository, path="logo.bin")
    assert (binary.is_binary, binary.added, binary.deleted) == (True, None, None)
    octopus = Commit.objects.get(repository=repository, message__startswith="Octopus")
    assert len(octopus.parents) == 3
    assert not FileChange.objects.filter(commit=octopus).exists()  # merges are counted on their branches
    assert Commit.objects.get(repository=repository, message__startswith="An empty").files_changed == 0

    files = {file.path: file for file in File.objects.filter(repository=repository)}
    assert "name with spaces.txt" not in files  # deleted at the tip
    assert (files["src/main.py"].lines, files["src/main.py"].language) == (41, "Python")
    assert files["no-final-newline.txt"].lines == 2
    assert files["new\nline.txt"].lines == 1
    assert files["ünïcödé.txt"].lines == 1
    assert (files["logo.bin"].is_binary, files["logo.bin"].lines) == (True, 0)
    assert (files["link"].language, files["link"].lines) == ("Symlink", 0)
    assert files["vendor/lib"].language == "Submodule"
    # Churn and commit counts are aggregated from history: README was added, then edited once.
    readme = files["README.md"]
    assert readme.commit_count == 2
    assert readme.churn == 3 + 1 + 1
    assert readme.last_changed_at is not None


def test_incremental_runs_add_only_new_commits(root: Path, django_capture_on_commit_callbacks):
    repo = rich_repo(root / "rich")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    first = ingest(repository, django_capture_on_commit_callbacks)

    nothing_new = ingest(repository, django_capture_on_commit_callbacks)
    repo.write("src/main.py", "rewritten\n")
    repo.commit("Rewrite main")
    repo.write("docs/guide.md", "# Guide\n")
    repo.commit("Add a guide")
    second = ingest(repository, django_capture_on_commit_callbacks)

    assert (nothing_new.status, nothing_new.commits_total, nothing_new.from_sha) == (
        "succeeded",
        0,
        first.to_sha,
    )
    assert (second.status, second.commits_total, second.from_sha) == ("succeeded", 2, first.to_sha)
    assert_matches_git(repo, repository)
    assert File.objects.get(repository=repository, path="src/main.py").lines == 1


def test_a_force_push_is_walked_again_without_duplicates(root: Path, django_capture_on_commit_callbacks):
    repo = GitRepo(root / "rewritten")
    for number in range(4):
        repo.write("file.txt", f"version {number}\n")
        repo.commit(f"Version {number}")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)
    dropped = repo.head()
    repo.git("reset", "-q", "--hard", "HEAD~2")
    repo.write("file.txt", "another future\n")
    repo.commit("Rewritten history")

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert run.status == "succeeded"
    assert "History was rewritten" in run.notes[0]
    stored = set(Commit.objects.filter(repository=repository).values_list("sha", flat=True))
    assert repo.rev_list() <= stored
    assert dropped in stored  # commits that left the branch are kept, once
    assert Commit.objects.filter(repository=repository).count() == len(stored) == 4 + 1


def test_chunks_cover_history_exactly_and_run_twice_change_nothing(
    root: Path, settings, django_capture_on_commit_callbacks
):
    settings.APM_INGEST_CHUNK_COMMITS = 3
    settings.APM_INGEST_CHUNK_FILES = 4
    repo = rich_repo(root / "rich")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    run = ingest(repository, django_capture_on_commit_callbacks)
    assert len(run.chunks_done) == -(-len(repo.rev_list()) // 3)
    assert_matches_git(repo, repository)
    counts = (Commit.objects.count(), FileChange.objects.count(), run.commits_done, run.file_changes_added)

    # A chunk delivered again (a redelivered Celery task) neither adds rows nor counts twice.
    IngestionRun.objects.filter(pk=run.pk).update(status="running")
    ingestion_commits_chunk(run_id=run.pk, skip=3, count=3)
    IngestionRun.objects.filter(pk=run.pk).update(chunks_done=[])
    ingestion_commits_chunk(run_id=run.pk, skip=3, count=3)
    run.refresh_from_db()

    assert (Commit.objects.count(), FileChange.objects.count()) == counts[:2]
    assert run.commits_done == counts[2] + 3  # counted again only because its record was erased above


def test_an_empty_repository_ingests_as_zero_commits(root: Path, django_capture_on_commit_callbacks):
    repo = GitRepo(root / "empty")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert (run.status, run.commits_total, run.files_indexed) == ("succeeded", 0, 0)
    assert not Commit.objects.exists()


def test_one_ingestion_per_repository_at_a_time(root: Path, settings):
    repo = GitRepo(root / "busy")
    repo.commit("one", allow_empty=True)
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))

    first = ingestion_request(repository=repository, trigger="command")  # not run: the test never commits
    second = ingestion_request(repository=repository, trigger="api")

    assert (first.created, second.created, second.run.pk) == (True, False, first.run.pk)
    # A run whose worker went silent no longer blocks: it is failed and a new one starts.
    settings.APM_INGEST_STALE_SECONDS = 0
    third = ingestion_request(repository=repository, trigger="api")
    first.run.refresh_from_db()
    assert third.created
    assert (first.run.status, first.run.error) == (
        "failed",
        "abandoned: its worker stopped reporting progress",
    )


def test_a_missing_branch_fails_the_run_with_the_reason(root: Path, django_capture_on_commit_callbacks):
    repo = GitRepo(root / "branches")
    repo.commit("one", allow_empty=True)
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))

    run = ingest(repository, django_capture_on_commit_callbacks, branch="nope")

    assert run.status == "failed"
    assert run.error == "branch 'nope' does not exist in the repository"
    assert not Commit.objects.exists()


def test_a_repository_that_disappeared_fails_the_run(root: Path, django_capture_on_commit_callbacks):
    repo = GitRepo(root / "gone")
    repo.commit("one", allow_empty=True)
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    shutil.rmtree(repo.path)

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert run.status == "failed"
    assert "does not exist" in run.error


def test_a_commit_of_ten_thousand_files_and_a_fifty_megabyte_file(
    root: Path, django_capture_on_commit_callbacks
):
    path = repository_create(root / "big", wide_commit_stream(files=10_000))
    repo = GitRepo.existing(path)
    big_line = b"x" * 99 + b"\n"
    repo.write("assets/big.log", big_line * (50 * 1024 * 1024 // len(big_line)))
    big_commit = repo.commit("Add a 50 MB log")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert run.status == "succeeded", run.error
    assert_matches_git(repo, repository)
    wide = Commit.objects.get(repository=repository, message="Add many files\n")
    assert wide.files_changed == FileChange.objects.filter(commit=wide).count() == 10_000
    big = File.objects.get(repository=repository, path="assets/big.log")
    assert (big.size, big.lines, big.is_binary) == (
        len(big_line) * (50 * 1024 * 1024 // len(big_line)),
        524_288,
        False,
    )
    assert FileChange.objects.get(commit__sha=big_commit, path="assets/big.log").added == 524_288
    assert run.files_indexed == 10_001


def test_runs_are_counted_in_the_metrics(root: Path, django_capture_on_commit_callbacks, client):
    repo = GitRepo(root / "measured")
    repo.write("a.py", "a = 1\n")
    repo.commit("a")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))

    ingest(repository, django_capture_on_commit_callbacks)
    ingest(repository, django_capture_on_commit_callbacks, branch="missing")

    body = client.get("/metrics").content.decode()
    assert 'apm_ingestion_runs_total{status="succeeded"}' in body
    assert 'apm_ingestion_runs_total{status="failed"}' in body
    assert "apm_ingested_commits_total" in body
    assert "apm_ingestion_duration_seconds_bucket" in body


@pytest.mark.parametrize("branch", ["--upload-pack=touch x", "a..b", "with space", "-x"])
def test_unsafe_branch_names_are_refused_before_anything_is_written(root: Path, branch: str):
    repo = GitRepo(root / "named")
    repo.commit("one", allow_empty=True)
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))

    with pytest.raises(ValidationError) as excinfo:
        ingestion_request(repository=repository, trigger="command", branch=branch)

    assert "is not a valid branch name" in excinfo.value.message_dict["branch"][0]
    assert not IngestionRun.objects.exists()


def test_a_second_run_with_nothing_new_keeps_the_file_index(root: Path, django_capture_on_commit_callbacks):
    repo = rich_repo(root / "rich")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)
    files = sorted(File.objects.filter(repository=repository).values_list("path", "churn", "commit_count"))

    again = ingest(repository, django_capture_on_commit_callbacks)
    third = ingest(repository, django_capture_on_commit_callbacks)

    assert (again.status, again.files_scope, again.files_indexed) == ("succeeded", "unchanged", len(files))
    assert third.files_indexed == len(files)
    kept = File.objects.filter(repository=repository).values_list("path", "churn", "commit_count")
    assert sorted(kept) == files
    assert_matches_git(repo, repository)


def test_an_incremental_run_reads_only_the_changed_paths(root: Path, django_capture_on_commit_callbacks):
    repo = rich_repo(root / "rich")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)
    repo.write("src/main.py", "rewritten\n")
    repo.git("rm", "-q", "logo.bin")
    repo.git("mv", "README.md", "READ_ME.md")
    repo.commit("Rewrite main, drop the logo, rename the readme")

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert (run.status, run.files_scope) == ("succeeded", "changes"), run.error
    changed = repo.git("diff-tree", "-r", "-z", "--no-renames", "--name-only", "HEAD~1", "HEAD")
    assert run.files_total == len(changed.split(b"\0")[:-1])
    assert_matches_git(repo, repository)
    main = File.objects.get(repository=repository, path="src/main.py")
    assert (main.lines, main.commit_count) == (1, 2)  # renamed from src/app.py (1), rewritten now (2)
    assert not File.objects.filter(repository=repository, path__in=["logo.bin", "README.md"]).exists()


def test_authors_are_stored_as_the_mailmap_names_them(root: Path, django_capture_on_commit_callbacks):
    repo = GitRepo(root / "mapped")
    repo.write("a.txt", "a\n")
    repo.commit("By Ada's old address")
    repo.write(".mailmap", "Ada Lovelace <ada@analytical.example> <ada@example.com>\n")
    repo.commit("Map Ada's addresses")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))

    ingest(repository, django_capture_on_commit_callbacks)

    shortlog = repo.git("shortlog", "-sne", "--no-merges", "HEAD").decode()
    assert "Ada Lovelace <ada@analytical.example>" in shortlog
    assert set(Commit.objects.filter(repository=repository).values_list("author_email", flat=True)) == {
        "ada@analytical.example"
    }


def test_a_force_push_run_counts_what_it_added_not_what_it_read(
    root: Path, django_capture_on_commit_callbacks
):
    repo = GitRepo(root / "rewritten")
    for number in range(6):
        repo.write("file.txt", f"version {number}\n")
        repo.commit(f"Version {number}")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)
    repo.git("reset", "-q", "--hard", "HEAD~2")
    repo.write("file.txt", "another future\n")
    repo.commit("Rewritten history")

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert (run.commits_done, run.commits_added, run.file_changes_added) == (5, 1, 1)
    assert (run.lines_added, run.lines_deleted) == (1, 1)


def test_one_repository_spelled_three_ways_is_registered_once(root: Path):
    repo = GitRepo(root / "shop")
    repo.commit("start", allow_empty=True)
    (root / "shop-link").symlink_to(root / "shop")
    project = ProjectFactory()
    first = repository_register(project=project, source=str(repo.path))

    assert repository_register(project=project, source=f"{repo.path}/.git") == first
    assert repository_register(project=project, source=str(root / "shop-link")) == first
    with pytest.raises(ValidationError, match="already has this source"):
        repository_register(project=project, source=f"{repo.path}/.git/", existing_ok=False)
    assert Repository.objects.filter(project=project).count() == 1
    assert repository_register(project=ProjectFactory(), source=f"{repo.path}/.git").name == "shop"


def test_one_remote_spelled_two_ways_is_registered_once():
    project = ProjectFactory()
    first = repository_register(project=project, source="https://git.example.com/team/alpha.git")

    assert repository_register(project=project, source="https://GIT.example.com/team/alpha/") == first
    assert repository_register(project=project, source="https://git.example.com/team/beta") != first


def planner_forgets_other_tests() -> None:
    """The planner's estimate of file_changes as this test sees the table (empty): other tests of the
    process wrote rows, rolled back, and may have left an estimate of thousands behind."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE file_changes")


def test_a_big_first_ingestion_refreshes_the_planners_statistics(
    root: Path, monkeypatch, django_capture_on_commit_callbacks
):
    if connection.vendor != "postgresql":
        pytest.skip("statistics for PostgreSQL's planner; MariaDB refreshes its own, SQLite plans without")

    monkeypatch.setattr(repos.ingestion.pipeline, "ANALYZE_AFTER_ROWS", 3)  # rows of this small history
    planner_forgets_other_tests()
    repo = rich_repo(root / "rich")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'file_changes'")
        (estimated,) = cursor.fetchone()
    # Without statistics the planner knows no row count (-1); after ANALYZE it knows the table's rows.
    assert estimated == FileChange.objects.count()


def test_statistics_are_refreshed_when_a_run_outgrows_them_and_only_then(
    root: Path, monkeypatch, django_capture_on_commit_callbacks
):
    """A run's share of the table decides, not a fixed count: a first ingestion of 10,000 commits stayed
    below the old 20,000-row threshold, and change coupling was planned over 'empty' tables (21-42 s)."""
    if connection.vendor != "postgresql":
        pytest.skip("statistics for PostgreSQL's planner; MariaDB refreshes its own, SQLite plans without")

    def estimated() -> float:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'file_changes'")
            return cursor.fetchone()[0]

    monkeypatch.setattr(repos.ingestion.pipeline, "ANALYZE_AFTER_ROWS", 2)
    planner_forgets_other_tests()
    repo = GitRepo(root / "growing")
    for n in range(10):
        repo.write(f"f{n}.txt", "one\n")
    repo.commit("Ten files")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)
    assert estimated() == 10  # never analyzed before: refreshed

    repo.write("f0.txt", "one\ntwo\n")
    repo.commit("One file: 2 rows (the commit, its change), not over a fifth of the ten the planner knows")
    ingest(repository, django_capture_on_commit_callbacks)
    assert estimated() == 10

    for n in range(10):
        repo.write(f"f{n}.txt", "three\n")
    repo.commit("Ten more file changes: the table grows by more than a fifth")
    ingest(repository, django_capture_on_commit_callbacks)
    assert estimated() == FileChange.objects.filter(commit__repository=repository).count() == 21
