"""Commits move tasks: links, transitions and time entries from real repositories, and their guards."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from apm.services import api_token_create
from repos.gitlog import commits_read, log_revisions
from repos.grammar import CLOSED_STATUS
from repos.ingestion.pipeline import repository_git_dir
from repos.ingestion.writers import commits_write
from repos.linking import commits_link_tasks, run_notes_merge
from repos.models import CommitTaskLink, IngestionRun, Repository
from repos.services import ingestion_request, repository_register
from tasks.models import Task, TaskEvent, TimeEntry
from tasks.services import task_dependency_add, task_transition
from tests.factories import ProjectFactory, TaskFactory, UserFactory
from tests.repos.gitrepo import IDENTITY, GitRepo

pytestmark = pytest.mark.django_db

Outcome = CommitTaskLink.Outcome


@pytest.fixture
def project():
    project = ProjectFactory(key="APM")
    for number in range(1, 9):
        TaskFactory(project=project, title=f"Task {number}")
    return project


def ingest(repository: Repository, capture, **options) -> IngestionRun:
    with capture(execute=True):
        request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND, **options)
    request.run.refresh_from_db()
    assert request.run.status == IngestionRun.Status.SUCCEEDED, request.run.error
    return request.run


def task(project, number: int) -> Task:
    return Task.objects.get(project=project, number=number)


def link(sha: str, number: int) -> CommitTaskLink:
    return CommitTaskLink.objects.get(commit__sha=sha, task__number=number)


def started_repo(root: Path, project) -> tuple[GitRepo, Repository]:
    repo = GitRepo(root / "app")
    repo.write("README.md", "hello\n")
    repo.commit("Initial commit")
    return repo, repository_register(project=project, source=str(repo.path))


def test_closed_status_is_the_done_status() -> None:
    assert CLOSED_STATUS == Task.Status.DONE


def test_history_ingested_the_first_time_only_links(root: Path, project, django_capture_on_commit_callbacks):
    repo = GitRepo(root / "app")
    repo.write("a.txt", "1\n")
    fixes = repo.commit("Fixes APM-1 @2h")
    repo.write("a.txt", "2\n")
    review = repo.commit("APM-3 #in_review, refs APM-2")
    repo.write("a.txt", "3\n")
    odd = repo.commit("refs APM-999 and APM-2 #wontfix; UTF-8 is not a task")
    repository = repository_register(project=project, source=str(repo.path))

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert {
        (row.commit.sha, row.task.number, row.action, row.outcome) for row in CommitTaskLink.objects.all()
    } == {
        (fixes, 1, "fix", Outcome.HISTORY),
        (review, 3, "transition", Outcome.HISTORY),
        (review, 2, "reference", Outcome.LINKED),
        (odd, 2, "reference", Outcome.LINKED),
    }
    assert link(fixes, 1).minutes == 120
    assert link(review, 3).status == "in_review"
    assert set(Task.objects.filter(project=project).values_list("status", flat=True)) == {"todo"}
    assert not TimeEntry.objects.exists()
    assert not TaskEvent.objects.filter(source=TaskEvent.Source.COMMIT).exists()
    assert (run.task_links_created, run.task_requests_applied, run.task_requests_refused) == (4, 0, 0)
    assert "1 reference to an unknown task: APM-999." in run.notes
    assert f"{odd[:12]}: APM-2: #wontfix is not a status or a transition tag of APM." in run.notes
    assert "links" in run.timings


def test_new_commits_on_the_default_branch_move_tasks_and_log_time(
    root: Path, project, django_capture_on_commit_callbacks
):
    author = UserFactory(username="ada", email=IDENTITY["GIT_AUTHOR_EMAIL"])
    repo, repository = started_repo(root, project)
    ingest(repository, django_capture_on_commit_callbacks)
    repo.write("a.txt", "1\n")
    started = repo.commit("APM-1 #in_progress")
    repo.write("a.txt", "2\n")
    fixes = repo.commit("Fix the parser\n\nfixes APM-1 @1h30m, APM-2 #in_review @15m")

    run = ingest(repository, django_capture_on_commit_callbacks)

    first, second = task(project, 1), task(project, 2)
    assert (first.status, second.status) == ("done", "in_review")
    events = list(
        TaskEvent.objects.filter(task=first, kind=TaskEvent.Kind.STATUS_CHANGED)
        .order_by("id")
        .values_list("source", "from_status", "to_status", "commit_sha")
    )
    # Oldest commit first: in progress, then done.
    assert events == [("commit", "todo", "in_progress", started), ("commit", "in_progress", "done", fixes)]
    entries = {entry.task.number: entry for entry in TimeEntry.objects.select_related("task")}
    assert {number: entry.minutes for number, entry in entries.items()} == {1: 90, 2: 15}
    assert entries[1].source == TimeEntry.Source.COMMIT
    assert entries[1].source_ref == fixes
    assert entries[1].user == author
    assert entries[1].author_email == IDENTITY["GIT_AUTHOR_EMAIL"]
    assert (
        TaskEvent.objects.filter(task=first, kind=TaskEvent.Kind.TIME_LOGGED, commit_sha=fixes).count() == 1
    )
    assert (link(started, 1).outcome, link(fixes, 1).outcome, link(fixes, 2).outcome) == (
        Outcome.APPLIED,
    ) * 3
    assert (run.task_links_created, run.task_requests_applied, run.task_requests_refused) == (3, 3, 0)

    # The same commits seen again (another run, link_commits) change nothing.
    assert TaskEvent.objects.filter(source=TaskEvent.Source.COMMIT).count() == 5  # 3 moves, 2 time entries
    ingest(repository, django_capture_on_commit_callbacks)
    call_command("link_commits", project="APM", stdout=io.StringIO())
    assert TimeEntry.objects.count() == 2
    assert TaskEvent.objects.filter(source=TaskEvent.Source.COMMIT).count() == 5


def test_a_commit_never_reopens_or_closes_again_a_closed_task(
    root: Path, project, django_capture_on_commit_callbacks
):
    repo, repository = started_repo(root, project)
    ingest(repository, django_capture_on_commit_callbacks)
    task_transition(task=task(project, 4), status="done", source="api")
    task_transition(task=task(project, 5), status="cancelled", source="api")
    repo.write("a.txt", "1\n")
    sha = repo.commit("APM-4 #in_progress; fixes APM-5")

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert (task(project, 4).status, task(project, 5).status) == ("done", "cancelled")
    assert link(sha, 4).outcome == link(sha, 5).outcome == Outcome.REFUSED
    assert "APM-4 is done: it stays closed." in link(sha, 4).note
    assert run.task_requests_refused == 2
    assert not TaskEvent.objects.filter(source=TaskEvent.Source.COMMIT).exists()


def test_an_open_dependency_keeps_the_task_open_and_the_refusal_is_noted(
    root: Path, project, django_capture_on_commit_callbacks
):
    repo, repository = started_repo(root, project)
    ingest(repository, django_capture_on_commit_callbacks)
    task_dependency_add(task=task(project, 6), depends_on=task(project, 7), source="api")
    repo.write("a.txt", "1\n")
    sha = repo.commit("closes APM-6 @20m")
    refused_before = REGISTRY.get_sample_value("apm_commit_requests_total", {"outcome": "refused"}) or 0

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert task(project, 6).status == "todo"
    refused = link(sha, 6)
    assert (refused.action, refused.outcome) == ("close", Outcome.REFUSED)
    assert "APM-6 cannot be done while it waits on APM-7 (To do)" in refused.note
    assert any("APM-7" in note and note.startswith(sha[:12]) for note in run.notes)
    # The time spent is still true, and logged.
    assert TimeEntry.objects.get(task__number=6).minutes == 20
    assert (
        REGISTRY.get_sample_value("apm_commit_requests_total", {"outcome": "refused"}) == refused_before + 1
    )


def test_only_the_default_branch_transitions_and_a_merged_branch_applies_then(
    root: Path, project, django_capture_on_commit_callbacks
):
    repo, repository = started_repo(root, project)
    ingest(repository, django_capture_on_commit_callbacks)
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("feature.txt", "1\n")
    sha = repo.commit("fixes APM-8")

    ingest(repository, django_capture_on_commit_callbacks, branch="feature")
    assert task(project, 8).status == "todo"
    assert link(sha, 8).outcome == Outcome.PENDING

    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
    run = ingest(repository, django_capture_on_commit_callbacks)

    assert task(project, 8).status == "done"
    assert link(sha, 8).outcome == Outcome.APPLIED
    assert run.task_requests_applied == 1


def test_a_sha_in_two_repositories_acts_once(root: Path, project, django_capture_on_commit_callbacks):
    repo, repository = started_repo(root, project)
    mirror_path = root / "mirror"
    ingest(repository, django_capture_on_commit_callbacks)
    repo.write("a.txt", "1\n")
    sha = repo.commit("APM-2 @45m")
    ingest(repository, django_capture_on_commit_callbacks)
    # A second repository of the project with the same history (a fork), first ingested, then updated.
    repo.git("clone", "-q", str(repo.path), str(mirror_path))
    mirror = repository_register(project=project, source=str(mirror_path))
    ingest(mirror, django_capture_on_commit_callbacks)
    fork = GitRepo.existing(mirror_path)
    fork.git("reset", "-q", "--hard", "HEAD~1")
    ingest(mirror, django_capture_on_commit_callbacks)  # force-pushed back: history walked again
    fork.git("pull", "-q", "--ff-only", "origin", "main")
    ingest(mirror, django_capture_on_commit_callbacks)

    assert TimeEntry.objects.filter(task__number=2).count() == 1
    assert CommitTaskLink.objects.filter(commit__sha=sha, task__number=2).count() == 2


def test_automation_can_be_turned_off_per_project(root: Path, project, django_capture_on_commit_callbacks):
    project.commit_automation = False
    project.save()
    repo, repository = started_repo(root, project)
    ingest(repository, django_capture_on_commit_callbacks)
    repo.write("a.txt", "1\n")
    sha = repo.commit("fixes APM-1 @1h")

    ingest(repository, django_capture_on_commit_callbacks)

    assert task(project, 1).status == "todo"
    assert not TimeEntry.objects.exists()
    assert link(sha, 1).outcome == Outcome.DISABLED


def test_link_commits_reapplies_a_changed_grammar_to_history(
    root: Path, project, django_capture_on_commit_callbacks, capsys
):
    repo, repository = started_repo(root, project)
    repo.write("a.txt", "1\n")
    sha = repo.commit("Parser: done #4")
    project.commit_short_references = False
    project.save()
    ingest(repository, django_capture_on_commit_callbacks)
    assert not CommitTaskLink.objects.exists()

    project.commit_short_references = True
    project.commit_close_keywords = "done"
    project.save()
    call_command("link_commits", project="apm")

    assert "app: 2 commits read, 1 new links." in capsys.readouterr().out
    assert (link(sha, 4).action, link(sha, 4).outcome) == ("close", Outcome.HISTORY)
    assert task(project, 4).status == "todo"


def test_link_commits_names_what_is_wrong(project) -> None:
    with pytest.raises(CommandError, match="No project has the key 'NOPE'"):
        call_command("link_commits", project="nope")
    with pytest.raises(CommandError, match="APM has no repository named 'ghost'"):
        call_command("link_commits", project="APM", repository="ghost")


def test_linking_history_costs_the_same_queries_for_few_and_many_commits(root: Path, project):
    counts = []
    for size in (3, 60):
        repo = GitRepo(root / f"repo{size}")
        for number in range(size):
            repo.write("a.txt", f"{number}\n")
            repo.commit(f"fixes APM-{number % 8 + 1}, refs APM-{(number + 3) % 8 + 1} @1h")
        repository = repository_register(project=project, source=str(repo.path))
        git_dir = repository_git_dir(repository=repository, fetch=True)
        commits_write(
            repository_id=repository.pk,
            commits=commits_read(
                git_dir=git_dir, revisions=log_revisions(tip=repo.head()), skip=0, max_count=size
            ),
        )
        with CaptureQueriesContext(connection) as queries:
            report = commits_link_tasks(repository=repository, mode="history")
        assert report.links_created == size * 2
        counts.append(len(queries))
    # Commits read, tasks by number, existing links, the multi-row insert (plus its savepoint on some
    # databases): the same for 3 and for 60 commits.
    assert counts[0] == counts[1] <= 6


def test_the_api_and_the_admin_show_a_tasks_commits(
    root: Path, project, django_capture_on_commit_callbacks, admin_client
):

    staff = UserFactory(username="operator", is_staff=True, is_superuser=True)
    repo, repository = started_repo(root, project)
    ingest(repository, django_capture_on_commit_callbacks)
    task_dependency_add(task=task(project, 1), depends_on=task(project, 2), source="api")
    repo.write("a.txt", "1\n")
    sha = repo.commit("Parser\n\nfixes APM-1 @30m")
    ingest(repository, django_capture_on_commit_callbacks)

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=staff, name='t')[1]}")
    body = client.get("/api/v1/tasks/APM-1/commits/").json()

    assert body["count"] == 1
    row = body["results"][0]
    assert (row["sha"], row["repository_name"], row["subject"], row["action"]) == (
        sha,
        "app",
        "Parser",
        "fix",
    )
    assert (row["status"], row["minutes"], row["outcome"]) == ("done", 30, "refused")
    assert row["note"].startswith("APM-1 not moved to done: APM-1 cannot be done while it waits on APM-2")
    run = client.get(f"/api/v1/ingestion-runs/?repository={repository.pk}").json()["results"][0]
    assert (run["task_links_created"], run["task_requests_applied"], run["task_requests_refused"]) == (
        1,
        0,
        1,
    )

    page = admin_client.get(f"/admin/tasks/task/{task(project, 1).pk}/change/")
    assert page.status_code == 200
    assert "cannot be done while it waits on APM-2" in page.content.decode()
    refused = admin_client.get("/admin/repos/committasklink/?outcome=refused")
    assert sha[:12] in refused.content.decode()


def test_a_force_push_acts_only_on_commits_never_seen_before(
    root: Path, project, django_capture_on_commit_callbacks
):
    project.commit_short_references = False
    project.save()
    repo = GitRepo(root / "app")
    repo.write("a.txt", "1\n")
    old = repo.commit("fixes #1")  # not a reference while short references are off
    repo.write("a.txt", "2\n")
    repo.commit("Dropped by the force push")
    repository = repository_register(project=project, source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)
    project.commit_short_references = True
    project.save()
    repo.git("reset", "-q", "--hard", "HEAD~1")
    repo.write("a.txt", "3\n")
    new = repo.commit("fixes APM-2")

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert "History was rewritten" in run.notes[0]
    # The old commit is linked now (the grammar reads it), but as history: a rewrite replays nothing.
    assert (link(old, 1).outcome, task(project, 1).status) == (Outcome.HISTORY, "todo")
    assert (link(new, 2).outcome, task(project, 2).status) == (Outcome.APPLIED, "done")
    assert (run.task_links_created, run.task_requests_applied) == (2, 1)


def test_requests_left_pending_before_the_first_ingestion_of_the_default_branch_become_history(
    root: Path, project, django_capture_on_commit_callbacks
):
    repo = GitRepo(root / "app")
    repo.write("a.txt", "1\n")
    old = repo.commit("fixes APM-1")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("b.txt", "1\n")
    feature = repo.commit("fixes APM-2")
    repository = repository_register(project=project, source=str(repo.path), default_branch="main")

    ingest(repository, django_capture_on_commit_callbacks, branch="feature")  # walks main's history too
    assert link(old, 1).outcome == link(feature, 2).outcome == Outcome.PENDING
    ingest(repository, django_capture_on_commit_callbacks)  # the first run of main: history
    assert (link(old, 1).outcome, link(feature, 2).outcome) == (Outcome.HISTORY, Outcome.PENDING)

    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
    ingest(repository, django_capture_on_commit_callbacks)

    assert (task(project, 1).status, task(project, 2).status) == ("todo", "done")
    assert (link(old, 1).outcome, link(feature, 2).outcome) == (Outcome.HISTORY, Outcome.APPLIED)


# --- histories of a forge: pull request numbers and keys of no task ------------------------------------

UNKNOWN_LINE = re.compile(r"(\d+) references? to (?:an )?unknown tasks?(?:, e\.g\.|:) (.*)\.")


def test_a_github_history_links_no_pull_request_to_a_task(
    root: Path, project, django_capture_on_commit_callbacks
):
    repo = GitRepo(root / "app")
    repo.write("a.txt", "1\n")
    repo.commit("Faster parser (#3)")
    repo.write("a.txt", "2\n")
    repo.commit("Merge pull request #5 from ada/parser\n\nFaster parser")
    repo.write("a.txt", "3\n")
    fixes = repo.commit("fixes APM-2")
    repository = repository_register(project=project, source=str(repo.path))

    run = ingest(repository, django_capture_on_commit_callbacks)

    # A new project reads "#3" and "#5" as what they are on GitHub: pull requests, not tasks 3 and 5.
    assert project.commit_short_references is False
    assert list(CommitTaskLink.objects.values_list("commit__sha", "task__number")) == [(fixes, 2)]
    assert run.notes == []


def test_keys_of_no_task_are_counted_on_one_line(root: Path, project, django_capture_on_commit_callbacks):
    repo = GitRepo(root / "app")
    for number in range(100, 137):
        repo.write("a.txt", f"{number}\n")
        repo.commit(f"Port APM-{number} from the old tracker, refs APM-1")
    repository = repository_register(project=project, source=str(repo.path))

    run = ingest(repository, django_capture_on_commit_callbacks)

    unknown = [note for note in run.notes if UNKNOWN_LINE.fullmatch(note)]
    assert len(unknown) == 1, run.notes
    count, examples = UNKNOWN_LINE.fullmatch(unknown[0]).groups()
    assert int(count) == 37
    assert len(examples.split(", ")) == 3
    assert set(examples.split(", ")) <= {f"APM-{number}" for number in range(100, 137)}
    assert run.notes == unknown  # nothing else: no line per commit
    assert CommitTaskLink.objects.filter(task__number=1).count() == 37


def test_each_chunk_says_once_how_many_keys_named_no_task(
    root: Path, project, settings, django_capture_on_commit_callbacks
):
    settings.APM_INGEST_CHUNK_COMMITS = 10
    repo = GitRepo(root / "app")
    for number in range(100, 145):
        repo.write("a.txt", f"{number}\n")
        repo.commit(f"APM-{number} and APM-{number + 1000}")
    repository = repository_register(project=project, source=str(repo.path))

    run = ingest(repository, django_capture_on_commit_callbacks)

    # 45 commits in 5 chunks: the chunks' lines are folded into one for the run (run_notes_merge), and
    # its count adds up to every reference.
    lines = [UNKNOWN_LINE.fullmatch(note) for note in run.notes]
    assert all(lines), run.notes
    assert len(lines) == 1
    assert sum(int(line.group(1)) for line in lines) == 90


def test_the_chunks_lines_about_unknown_tasks_fold_into_one():
    notes = ["History was rewritten.", "12 references to unknown tasks, e.g. APM-100, APM-101, APM-102."]

    folded, rest = run_notes_merge(
        notes, ["1 reference to an unknown task: APM-100.", "abc: APM-2: #wontfix is not a status."]
    )
    again, _ = run_notes_merge(folded, ["4 references to unknown tasks, e.g. APM-7, APM-8, APM-9."])

    assert folded == [
        "History was rewritten.",
        "13 references to unknown tasks, e.g. APM-100, APM-101, APM-102.",
    ]
    assert rest == ["abc: APM-2: #wontfix is not a status."]
    assert again[1] == "17 references to unknown tasks, e.g. APM-100, APM-101, APM-102."
    # Nothing to fold into yet: the line is appended as it is.
    first, rest = run_notes_merge([], ["1 reference to an unknown task: APM-100."])
    assert (first, rest) == ([], ["1 reference to an unknown task: APM-100."])
    assert run_notes_merge(
        ["1 reference to an unknown task: APM-9."], ["2 references to unknown tasks, e.g. APM-9, APM-3."]
    )[0] == ["3 references to unknown tasks, e.g. APM-9, APM-3."]
