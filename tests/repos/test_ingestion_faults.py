"""Ingestion on a bad day: runs that fail half-way, runs abandoned while their worker still writes,
tasks delivered twice, settings changed during a run, a workspace tampered with. After each, the next
run must leave exactly what one clean run leaves. (Found by an adversarial review; each failed before
its fix.)"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from repos.ingestion import pipeline
from repos.ingestion.pipeline import (
    ingestion_commits_chunk,
    ingestion_fail,
    ingestion_files_chunk,
    ingestion_finish,
    ingestion_plan,
    repository_mirror_path,
)
from repos.models import Commit, CommitTaskLink, File, FileChange, FileHistory, IngestionRun, Repository
from repos.services import ingestion_request, ingestion_runs_purge, repository_register, repository_update
from tasks.models import Task
from tests.factories import ProjectFactory, TaskFactory
from tests.repos.gitrepo import GitRepo
from tests.repos.test_ingestion import assert_matches_git, ingest

pytestmark = pytest.mark.django_db


def stored_history(repository: Repository) -> dict[str, tuple[int, int]]:
    """{path: (churn, commit_count)} aggregated from the stored file changes."""
    totals: dict[str, list[int]] = {}
    for path, added, deleted in FileChange.objects.filter(repository=repository).values_list(
        "path", "added", "deleted"
    ):
        entry = totals.setdefault(path, [0, 0])
        entry[0] += (added or 0) + (deleted or 0)
        entry[1] += 1
    return {path: tuple(v) for path, v in totals.items()}


def files_figures(repository: Repository) -> dict[str, tuple[int, int]]:
    return {
        path: (churn, count)
        for path, churn, count in File.objects.filter(repository=repository).values_list(
            "path", "churn", "commit_count"
        )
    }


def tree_paths(repo: GitRepo, ref: str = "main") -> set[str]:
    return {path.decode() for path in repo.tree(ref)}


def start_run(repository: Repository, django_capture_on_commit_callbacks, **options) -> IngestionRun:
    """Request a run without letting Celery (eager) execute it: the test drives the steps itself."""
    with django_capture_on_commit_callbacks(execute=False):
        request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND, **options)
    return request.run


def run_steps(run_id: int, *, commits: bool = True, files: bool = True, finish: bool = True):
    plan = ingestion_plan(run_id=run_id)
    if commits:
        for skip, count in plan.commit_chunks:
            ingestion_commits_chunk(run_id=run_id, skip=skip, count=count)
    if files:
        for entries in plan.file_slices:
            ingestion_files_chunk(run_id=run_id, entries=entries)
    if finish:
        ingestion_finish(run_id=run_id)
    return plan


def test_a_run_after_one_that_failed_refreshes_every_path_its_commits_touched(
    root: Path, django_capture_on_commit_callbacks
):
    repo = GitRepo(root / "src")
    repo.write("a.txt", "one\n")
    repo.write("b.txt", "b\n")
    repo.commit("start")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    assert ingest(repository, django_capture_on_commit_callbacks).status == "succeeded"

    # a.txt is changed and changed back (net: no difference), b.txt changes for good.
    repo.write("a.txt", "two\n")
    repo.commit("a changes")
    repo.write("a.txt", "one\n")
    repo.commit("a changes back")
    repo.write("b.txt", "b2\n")
    repo.commit("b changes")

    # The run writes its commit chunks, then dies (worker lost, finish failed, a file chunk failed ...).
    failed = start_run(repository, django_capture_on_commit_callbacks)
    run_steps(failed.pk, files=False, finish=False)
    ingestion_fail(run_id=failed.pk, reason="worker lost")

    # The next run finishes the job.
    nxt = ingest(repository, django_capture_on_commit_callbacks)
    assert nxt.status == "succeeded", nxt.error

    history = stored_history(repository)
    hist_rows = {
        p: (c, n)
        for p, c, n in FileHistory.objects.filter(repository=repository).values_list(
            "path", "churn", "commit_count"
        )
    }
    assert hist_rows["a.txt"] == history["a.txt"] == (5, 3)  # the running total itself is right
    # ... but the file index was never given it: one run (no failure) gives (5, 3).
    assert files_figures(repository)["a.txt"] == history["a.txt"]


def test_files_written_by_a_failed_run_do_not_survive_a_force_push_back(
    root: Path, django_capture_on_commit_callbacks
):
    repo = GitRepo(root / "src")
    repo.write("a.txt", "one\n")
    t1 = repo.commit("start")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)

    repo.write("new.txt", "new\n")
    repo.write("a.txt", "one\ntwo\nthree\n")
    repo.commit("bad commit")

    failed = start_run(repository, django_capture_on_commit_callbacks)
    run_steps(failed.pk, commits=False, finish=False)  # the file slices ran beside the chunks
    ingestion_fail(run_id=failed.pk, reason="a commit chunk failed")

    repo.git("reset", "-q", "--hard", t1)  # the bad commit is force-pushed away

    nxt = ingest(repository, django_capture_on_commit_callbacks)
    assert nxt.status == "succeeded", nxt.error
    assert set(files_figures(repository)) == tree_paths(repo)
    assert File.objects.get(repository=repository, path="a.txt").lines == 1


def test_a_default_branch_changed_during_a_run_leaves_the_index_right(
    root: Path, django_capture_on_commit_callbacks
):
    repo = GitRepo(root / "src")
    repo.write("a.txt", "one\n")
    repo.commit("start")
    repo.git("branch", "dev")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path), default_branch="main")
    ingest(repository, django_capture_on_commit_callbacks)

    repo.write("main-only.txt", "main\n")
    repo.commit("main moves")
    repo.git("checkout", "-q", "dev")
    repo.write("dev-only.txt", "dev\n")
    repo.commit("dev moves")
    repo.git("checkout", "-q", "main")

    run = start_run(repository, django_capture_on_commit_callbacks)
    run_steps(run.pk, finish=False)  # a run of main: its file slices index main's tip
    repository_update(repository=repository, default_branch="dev")  # an operator, meanwhile
    ingestion_finish(run_id=run.pk)

    repository.refresh_from_db()
    nxt = ingest(repository, django_capture_on_commit_callbacks)
    assert nxt.status == "succeeded", nxt.error
    assert set(files_figures(repository)) == tree_paths(repo, "dev")


def test_two_long_paths_with_the_same_first_1024_characters_ingest(
    root: Path, django_capture_on_commit_callbacks
):
    repo = GitRepo(root / "src")
    repo.write("x.txt", "x\n")
    repo.commit("start")
    prefix = "/".join(["d" * 200] * 6)  # 1205 characters of directories
    blob = repo.git("hash-object", "-w", "--stdin", input=b"long\n").decode().strip()
    for tail in ("a.txt", "b.txt"):
        repo.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{prefix}/{tail}")
    repo.git("commit", "-q", "-m", "two long paths")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    run = ingest(repository, django_capture_on_commit_callbacks)
    assert run.status == "succeeded", run.error


def test_a_symlink_at_the_mirror_path_is_replaced_not_followed(
    root: Path, django_capture_on_commit_callbacks
):
    repo = GitRepo(root / "src")
    repo.write("a.txt", "one\n")
    repo.commit("start")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    mirror = repository_mirror_path(repository=repository)
    mirror.parent.mkdir(parents=True)
    os.symlink(root / "gone-volume" / "mirror.git", mirror)
    run = ingest(repository, django_capture_on_commit_callbacks)
    assert run.status == "succeeded", run.error


def test_a_late_file_chunk_of_an_abandoned_run_writes_nothing(
    root: Path, settings, django_capture_on_commit_callbacks, monkeypatch
):
    repo = GitRepo(root / "src")
    repo.write("a.txt", "one\n")
    repo.commit("start")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)

    repo.write("a.txt", "one\ntwo\n")
    repo.commit("T2")
    stale = start_run(repository, django_capture_on_commit_callbacks)
    plan = ingestion_plan(run_id=stale.pk)

    original = pipeline.blobs_read
    fired = []

    def slow_blobs_read(**kwargs):
        stats = list(original(**kwargs))  # the stale worker reads its blobs (slowly) ...
        if not fired:
            fired.append(1)
            # ... meanwhile it is declared abandoned, the source moves on and a new run does everything
            repo.write("a.txt", "one\ntwo\nthree\n")
            repo.commit("T3")
            settings.APM_INGEST_STALE_SECONDS = 0
            replacement = ingest(repository, django_capture_on_commit_callbacks)
            assert replacement.status == "succeeded", replacement.error
            settings.APM_INGEST_STALE_SECONDS = 900
        return iter(stats)

    monkeypatch.setattr(pipeline, "blobs_read", slow_blobs_read)
    for entries in plan.file_slices:
        ingestion_files_chunk(run_id=stale.pk, entries=entries)  # ... then it writes T2's figures
    monkeypatch.setattr(pipeline, "blobs_read", original)

    stale.refresh_from_db()
    assert stale.status == "failed"
    # The next run sees the same tip and reads nothing: the index keeps T2's a.txt for good.
    after = ingest(repository, django_capture_on_commit_callbacks)
    assert after.status == "succeeded"
    assert File.objects.get(repository=repository, path="a.txt").lines == 3


def test_a_plan_delivered_again_after_a_push_keeps_its_commits(
    root: Path, settings, django_capture_on_commit_callbacks
):
    settings.APM_INGEST_CHUNK_COMMITS = 2
    repo = GitRepo(root / "src")
    for n in range(4):
        repo.write("a.txt", f"{n}\n")
        repo.commit(f"c{n}")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    planned = repo.rev_list()
    run = start_run(repository, django_capture_on_commit_callbacks)
    first = ingestion_plan(run_id=run.pk)
    ingestion_commits_chunk(run_id=run.pk, skip=0, count=2)  # a chunk of the first chord is written

    for n in range(4, 6):  # a push lands
        repo.write("a.txt", f"{n}\n")
        repo.commit(f"c{n}")
    second = ingestion_plan(run_id=run.pk)  # the plan task delivered again
    for skip, count in second.commit_chunks:
        ingestion_commits_chunk(run_id=run.pk, skip=skip, count=count)
    for skip, count in first.commit_chunks:
        ingestion_commits_chunk(run_id=run.pk, skip=skip, count=count)
    ingestion_finish(run_id=run.pk)
    run.refresh_from_db()

    # The run ingests what it planned, every commit of it; the commits pushed since are the next run's.
    assert second.commit_chunks == [(2, 2)]
    assert run.status == "succeeded"
    assert set(Commit.objects.filter(repository=repository).values_list("sha", flat=True)) == planned
    ingest(repository, django_capture_on_commit_callbacks)
    assert set(Commit.objects.filter(repository=repository).values_list("sha", flat=True)) == repo.rev_list()


def test_a_rebuild_of_a_lost_index_that_failed_is_completed_by_the_next_run(
    root: Path, settings, django_capture_on_commit_callbacks
):
    settings.APM_INGEST_CHUNK_FILES = 2
    repo = GitRepo(root / "src")
    for n in range(6):
        repo.write(f"f{n}.txt", "x\n")
    repo.commit("start")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)
    File.objects.filter(repository=repository).delete()  # the index was lost

    rebuild = start_run(repository, django_capture_on_commit_callbacks)
    plan = ingestion_plan(run_id=rebuild.pk)
    assert IngestionRun.objects.get(pk=rebuild.pk).files_scope == "tree"
    ingestion_files_chunk(run_id=rebuild.pk, entries=plan.file_slices[0])  # one slice, then a failure
    ingestion_fail(run_id=rebuild.pk, reason="cat-file timed out")

    nxt = ingest(repository, django_capture_on_commit_callbacks)
    assert nxt.status == "succeeded"
    assert File.objects.filter(repository=repository).count() == 6, nxt.files_scope


# --- Found by a second review: what a run must remember across other branches, purges, a deleted
# branch, and two deliveries of its plan.


def _ingested_then_a_bad_commit(root: Path, capture):
    repo = GitRepo(root / "src")
    repo.write("a.txt", "one\n")
    t1 = repo.commit("start")
    repo.git("branch", "feature")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path), default_branch="main")
    assert ingest(repository, capture).status == "succeeded"
    repo.write("new.txt", "new\n")
    repo.write("a.txt", "one\ntwo\nthree\n")
    repo.commit("bad commit")
    return repo, repository, t1


def _index_is_the_tree(repo, repository):
    assert set(files_figures(repository)) == tree_paths(repo)
    assert File.objects.get(repository=repository, path="a.txt").lines == len(
        (repo.path / "a.txt").read_text().splitlines()
    )
    history = stored_history(repository)
    assert files_figures(repository) == {p: history[p] for p in files_figures(repository)}


def test_a_failed_run_is_not_forgotten_by_a_run_of_another_branch(
    root: Path, django_capture_on_commit_callbacks
):
    repo, repository, t1 = _ingested_then_a_bad_commit(root, django_capture_on_commit_callbacks)
    failed = start_run(repository, django_capture_on_commit_callbacks)
    run_steps(failed.pk, commits=False, finish=False)  # its file slices indexed the bad tree
    ingestion_fail(run_id=failed.pk, reason="a commit chunk failed")

    # A run of another branch succeeds meanwhile (a push webhook of a feature branch).
    repo.git("checkout", "-q", "feature")
    repo.write("f.txt", "f\n")
    repo.commit("feature work")
    repo.git("checkout", "-q", "main")
    other = ingest(repository, django_capture_on_commit_callbacks, branch="feature")
    assert other.status == "succeeded", other.error

    repo.git("reset", "-q", "--hard", t1)  # the bad commit is force-pushed away
    nxt = ingest(repository, django_capture_on_commit_callbacks)
    assert nxt.status == "succeeded", nxt.error
    _index_is_the_tree(repo, repository)


def test_a_failed_run_is_not_forgotten_by_a_purge_of_runs(root: Path, django_capture_on_commit_callbacks):
    repo, repository, t1 = _ingested_then_a_bad_commit(root, django_capture_on_commit_callbacks)
    failed = start_run(repository, django_capture_on_commit_callbacks)
    run_steps(failed.pk, commits=False, finish=False)
    ingestion_fail(run_id=failed.pk, reason="a commit chunk failed")
    # another request fails before its plan (e.g. the source was briefly unreadable)
    second = start_run(repository, django_capture_on_commit_callbacks)
    ingestion_fail(run_id=second.pk, reason="source unreadable")
    assert ingestion_runs_purge(older_than_days=0) >= 1  # the operator's nightly purge

    repo.git("reset", "-q", "--hard", t1)
    nxt = ingest(repository, django_capture_on_commit_callbacks)
    assert nxt.status == "succeeded", nxt.error
    _index_is_the_tree(repo, repository)


def test_requests_left_pending_by_a_purged_run_of_another_branch_become_history(
    root: Path, django_capture_on_commit_callbacks
):
    project = ProjectFactory(key="APM")
    for number in range(1, 3):
        TaskFactory(project=project, title=f"Task {number}")
    repo = GitRepo(root / "app")
    repo.write("a.txt", "1\n")
    old = repo.commit("fixes APM-1")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("b.txt", "1\n")
    repo.commit("feature work")
    repo.git("checkout", "-q", "main")
    repository = repository_register(project=project, source=str(repo.path), default_branch="main")

    assert ingest(repository, django_capture_on_commit_callbacks, branch="feature").status == "succeeded"
    assert CommitTaskLink.objects.get(commit__sha=old).outcome == "pending"
    # a default-branch request that failed before its plan, then the nightly purge
    second = start_run(repository, django_capture_on_commit_callbacks)
    ingestion_fail(run_id=second.pk, reason="source unreadable")
    ingestion_runs_purge(older_than_days=0)
    assert not IngestionRun.objects.filter(repository=repository, files_scope="skipped").exists()

    first_main = ingest(repository, django_capture_on_commit_callbacks)  # the first run of main: history
    assert first_main.status == "succeeded", first_main.error

    repo.write("c.txt", "c\n")
    repo.commit("more")
    assert ingest(repository, django_capture_on_commit_callbacks).status == "succeeded"
    repo.git("reset", "-q", "--hard", old)  # force push: "more" is replaced
    repo.write("c.txt", "d\n")
    repo.commit("rewritten")
    assert ingest(repository, django_capture_on_commit_callbacks).status == "succeeded"
    assert Task.objects.get(project=project, number=1).status == "todo"  # an old commit replayed nothing


def test_a_run_while_the_branch_is_gone_keeps_the_ingested_tip(
    root: Path, django_capture_on_commit_callbacks
):
    repo = GitRepo(root / "src")
    repo.write("a.txt", "one\n")
    t1 = repo.commit("start")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path), default_branch="main")
    assert ingest(repository, django_capture_on_commit_callbacks).status == "succeeded"
    repo.git("update-ref", "-d", "refs/heads/main")  # the branch is deleted for a moment
    run = ingest(repository, django_capture_on_commit_callbacks)
    repository.refresh_from_db()
    assert (run.status, run.files_scope, repository.last_ingested_sha) == ("succeeded", "skipped", t1)
    # the branch comes back with a new commit asking to close a task
    project = repository.project
    TaskFactory(project=project, title="T")
    key = f"{project.key}-1"
    repo.git("update-ref", "refs/heads/main", t1)
    repo.git("reset", "-q", "--hard", t1)
    repo.write("b.txt", "b\n")
    sha = repo.commit(f"fixes {key}")
    nxt = ingest(repository, django_capture_on_commit_callbacks)
    assert (nxt.status, nxt.from_sha) == ("succeeded", t1)
    assert CommitTaskLink.objects.get(commit__sha=sha).outcome == "applied"


def test_two_deliveries_of_the_plan_at_once_record_one_plan(
    root: Path, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.APM_INGEST_CHUNK_COMMITS = 2
    repo = GitRepo(root / "src")
    for n in range(4):
        repo.write("a.txt", f"{n}\n")
        repo.commit(f"c{n}")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    run = start_run(repository, django_capture_on_commit_callbacks)

    real = pipeline.repository_git_dir
    calls = []

    def git_dir(**kwargs):
        if kwargs.get("fetch") and not calls:
            calls.append(1)
            # delivery 1 is fetching (slow); delivery 2 of the same task (acks_late) plans and its
            # chunks run; then a push lands before delivery 1's fetch completes
            second = ingestion_plan(run_id=run.pk)
            for skip, count in second.commit_chunks:
                ingestion_commits_chunk(run_id=run.pk, skip=skip, count=count)
            for n in range(4, 6):
                repo.write("a.txt", f"{n}\n")
                repo.commit(f"c{n}")
        return real(**kwargs)

    monkeypatch.setattr(pipeline, "repository_git_dir", git_dir)
    first = ingestion_plan(run_id=run.pk)
    for skip, count in first.commit_chunks:
        ingestion_commits_chunk(run_id=run.pk, skip=skip, count=count)
    ingestion_finish(run_id=run.pk)
    run.refresh_from_db()
    repository.refresh_from_db()
    stored = set(Commit.objects.filter(repository=repository).values_list("sha", flat=True))
    assert repo.rev_list(repository.last_ingested_sha) <= stored


def _rows(repository: Repository) -> dict[str, list[tuple[object, ...]]]:
    commits = Commit.objects.filter(repository=repository)
    changes = FileChange.objects.filter(repository=repository)
    files = File.objects.filter(repository=repository)
    return {
        "commits": sorted(commits.values_list("sha", "authored_at", "timestamp")),
        "changes": sorted(changes.values_list("commit__sha", "path", "added", "deleted")),
        "files": sorted(files.values_list("path", "churn", "commit_count", "last_changed_at")),
    }


def test_commits_with_absurd_dates_are_kept_dated_within_range_and_named_in_the_notes(
    root: Path, django_capture_on_commit_callbacks
):
    """git accepts ``@99999999999999`` (year 3170843) as a date, and anyone who may push can write one: it
    used to fail every run of the repository. The commit is kept: its other date when that is valid, else
    the last day APM keeps; the run's notes name it. Ingesting again twice leaves what one run left."""
    far = "@99999999999999 +0000"
    repo = GitRepo(root / "absurd")
    repo.write("a.txt", "one\n")
    repo.commit("Start")
    repo.write("b.txt", "two\n")
    env = {**repo.env(), "GIT_COMMITTER_DATE": far}
    repo.git("add", "-A", env=env)
    repo.git("commit", "-q", "-m", "A committer date far ahead", env=env)
    committer_far = repo.head()
    repo.write("c.txt", "three\n")
    env = {**repo.env(), "GIT_AUTHOR_DATE": far, "GIT_COMMITTER_DATE": far}
    repo.git("add", "-A", env=env)
    repo.git("commit", "-q", "-m", "Both dates far ahead", env=env)
    both_far = repo.head()
    repo.write("a.txt", "one\nfour\n")
    repo.commit("After")
    assert repo.git("log", "-1", "--format=%ct", both_far).strip() == b"99999999999999"
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert (run.status, run.error, run.commits_added) == ("succeeded", "", 4)
    assert_matches_git(repo, repository)
    stored = {commit.sha: commit for commit in Commit.objects.filter(repository=repository)}
    # The committer date taken from the valid author date; with none valid, the last day APM keeps.
    assert stored[committer_far].timestamp == stored[committer_far].authored_at
    assert stored[committer_far].authored_at.year == 2023
    last_day = datetime.datetime(2999, 12, 31, tzinfo=datetime.UTC)
    assert (stored[both_far].authored_at, stored[both_far].timestamp) == (last_day, last_day)
    notes = " ".join(run.notes)
    assert f"Commit {committer_far[:12]} has a committer date 99999999999999 outside 1900-2999" in notes
    assert f"Commit {both_far[:12]} has an author date 99999999999999 and a committer date" in notes
    once = _rows(repository)

    again = [ingest(repository, django_capture_on_commit_callbacks) for _ in range(2)]

    assert [(r.status, r.commits_added, r.notes) for r in again] == [("succeeded", 0, [])] * 2
    assert _rows(repository) == once
