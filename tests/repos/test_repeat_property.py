"""N runs equal one run, row for row: the property every entry point users repeat must keep.

Hypothesis draws a sequence of what happens to a repository and to APM: pushes of a few commits (some
saying ``fixes KEY-N @1h``), force pushes, ``ingest_repo``, ``ingest_all``, the push webhook and
``link_commits``. The sequence is played twice on real git repositories and the database: once as
drawn, once with APM's steps repeated (each run, webhook and command done two or three times, as a
scheduled re-ingest, a redelivered webhook or an operator's second try would). Every table must come
out the same: commits, file changes, files with their history figures, file histories, commit-task
links, time entries, task events and the tasks' statuses. The commits, file changes and files must also
equal what a fresh ingestion of the final state stores (for the commits still on the branch, when a
force push left some behind).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from projects.models import Project
from repos.ingestion import pipeline
from repos.linking import commits_link_tasks
from repos.models import Commit, CommitTaskLink, File, FileChange, FileHistory, IngestionRun, Repository
from repos.services import ingestion_request, repositories_ingest_all, repository_register
from tasks.models import Task, TaskEvent, TimeEntry
from tasks.services import task_create
from tests.factories import UserFactory
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db

KEY = "REP"
TASKS = 4

# What happens to the source repository.
push = st.tuples(
    st.just("push"),
    st.lists(
        st.tuples(
            st.integers(0, 5),  # which file the commit changes
            st.sampled_from(["", "fixes", "refs", "time", "in_progress"]),  # what the message asks
            st.integers(1, TASKS),  # of which task
        ),
        min_size=1,
        max_size=4,
    ),
)
force_push = st.tuples(st.just("force_push"), st.integers(1, 3))
# A run that dies after its first commit chunk and first file slice (a worker lost, a database gone),
# and a run of another branch: events that happen once, whatever is repeated around them.
interrupted = st.tuples(st.just("interrupted"), st.just(0))
other_branch = st.tuples(st.just("other_branch"), st.integers(1, 2))
# What APM is asked to do, each possibly repeated.
apm_step = st.tuples(st.sampled_from(["ingest", "ingest_all", "webhook", "link_commits"]), st.integers(1, 3))
steps = st.lists(
    st.one_of(push, push, force_push, apm_step, apm_step, apm_step, interrupted, other_branch),
    min_size=2,
    max_size=10,
)


class World:
    """One source repository, one project with its tasks, one registered repository."""

    def __init__(self, path: Path, capture: Any) -> None:
        self.repo = GitRepo(path)
        self.repo.write("README.md", "start\n")
        self.repo.commit("Start")
        self.capture = capture
        self.project = Project.objects.create(key=KEY, name="Repeat")
        author = UserFactory(username="ada", email="ada@example.com")
        for number in range(1, TASKS + 1):
            task_create(project=self.project, title=f"Task {number}", source="api", actor=author)
        self.repository = repository_register(project=self.project, source=str(self.repo.path))
        self.commits_made = 0
        self.force_pushed = False
        self.side_branch = False

    # --- the source -----------------------------------------------------------------------------------

    def push(self, commits: list[tuple[int, str, int]]) -> None:
        for file_number, asks, task in commits:
            self.commits_made += 1
            self.repo.write(f"src/file{file_number}.txt", f"change {self.commits_made}\n" * (file_number + 1))
            if file_number == 5 and (self.repo.path / "src/file0.txt").exists():
                self.repo.git("rm", "-q", "src/file0.txt")  # paths leave the tree too
            message = {
                "": f"Change {self.commits_made}",
                "fixes": f"Change {self.commits_made}, fixes {KEY}-{task} @1h",
                "refs": f"Change {self.commits_made} for {KEY}-{task}",
                "time": f"{KEY}-{task} @30m change {self.commits_made}",
                "in_progress": f"{KEY}-{task} #in_progress change {self.commits_made}",
            }[asks]
            self.repo.commit(message, allow_empty=True)

    def force_push(self, back: int) -> None:
        depth = int(self.repo.git("rev-list", "--count", "HEAD").decode()) - 1
        self.repo.git("reset", "-q", "--hard", f"HEAD~{min(back, depth)}")
        self.commits_made += 1
        self.repo.write("src/rewritten.txt", f"rewritten {self.commits_made}\n")
        self.repo.commit(f"Rewritten {self.commits_made}")
        self.force_pushed = True

    # --- APM ------------------------------------------------------------------------------------------

    def apm(self, step: str) -> None:
        with self.capture(execute=True):
            if step == "ingest":
                ingestion_request(repository=self.repository, trigger=IngestionRun.Trigger.COMMAND)
            elif step == "ingest_all":
                list(repositories_ingest_all(trigger=IngestionRun.Trigger.COMMAND))
            elif step == "webhook":
                self._webhook()
            else:
                commits_link_tasks(repository=self.repository, mode="history")
        failed = IngestionRun.objects.filter(repository=self.repository, status="failed").exclude(
            error="the worker died"
        )
        assert not failed.exists(), failed.first().error

    def _webhook(self) -> None:
        self.repository.refresh_from_db()
        body = json.dumps(
            {
                "ref": "refs/heads/main",
                "before": "0" * 40,
                "after": self._head(),
                "repository": {"clone_url": "file:///not-used", "default_branch": "main"},
            }
        ).encode()
        digest = hmac.new(self.repository.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        response = APIClient().post(
            f"/api/v1/hooks/push/?repository={self.repository.pk}",
            data=body,
            content_type="application/json",
            HTTP_X_GITHUB_EVENT="push",
            HTTP_X_HUB_SIGNATURE_256=f"sha256={digest}",
        )
        assert response.status_code in (200, 202), response.content

    def _head(self) -> str:
        # Not through GitRepo.git, whose clock moves on every call: APM's steps, repeated or not, must
        # leave the dates (and so the shas) of the commits that follow unchanged.
        return subprocess.run(
            ["git", "-C", str(self.repo.path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def interrupted(self) -> None:
        """A run that writes its first chunk and slice, then fails (its worker died)."""
        with self.capture(execute=False):
            run = ingestion_request(repository=self.repository, trigger=IngestionRun.Trigger.COMMAND).run
        plan = pipeline.ingestion_plan(run_id=run.pk)
        if plan.commit_chunks:
            skip, count = plan.commit_chunks[0]
            pipeline.ingestion_commits_chunk(run_id=run.pk, skip=skip, count=count)
        if plan.file_slices:
            pipeline.ingestion_files_chunk(run_id=run.pk, entries=plan.file_slices[0])
        pipeline.ingestion_fail(run_id=run.pk, reason="the worker died")

    def other_branch(self, commits: int) -> None:
        """Commits on a branch beside the default one, and a run of that branch."""
        self.repo.git("checkout", "-q", "-B", "side")
        for _ in range(commits):
            self.commits_made += 1
            self.repo.write("side/notes.txt", f"side {self.commits_made}\n")
            self.repo.commit(f"Side {self.commits_made}")
        self.repo.git("checkout", "-q", "main")
        with self.capture(execute=True):
            ingestion_request(repository=self.repository, trigger=IngestionRun.Trigger.COMMAND, branch="side")
        self.side_branch = True

    def play(self, sequence: list[tuple[Any, ...]], *, repeated: bool) -> None:
        for step in sequence:
            if step[0] == "push":
                self.push(step[1])
            elif step[0] == "force_push":
                self.force_push(step[1])
            elif step[0] == "interrupted":
                self.interrupted()
            elif step[0] == "other_branch":
                self.other_branch(step[1])
            else:
                for _ in range(step[1] if repeated else 1):
                    self.apm(step[0])


def tables(repository: Repository, project: Project) -> dict[str, list[tuple[Any, ...]]]:
    """Every row ingestion and linking write, without ids and write times, in a stable order."""
    sha = dict(Commit.objects.filter(repository=repository).values_list("id", "sha"))
    number = dict(Task.objects.filter(project=project).values_list("id", "number"))
    return {
        "commits": sorted(
            Commit.objects.filter(repository=repository).values_list(
                "sha",
                "parents",
                "author_email",
                "timestamp",
                "message",
                "additions",
                "deletions",
                "files_changed",
                "is_merge",
            )
        ),
        "file_changes": sorted(
            (sha[commit_id], *rest)
            for commit_id, *rest in FileChange.objects.filter(repository=repository).values_list(
                "commit_id", "path", "old_path", "change_type", "added", "deleted", "is_binary"
            )
        ),
        "files": sorted(
            File.objects.filter(repository=repository).values_list(
                "path", "language", "size", "lines", "is_binary", "churn", "commit_count", "last_changed_at"
            )
        ),
        "file_histories": sorted(
            FileHistory.objects.filter(repository=repository).values_list(
                "path", "churn", "commit_count", "last_changed_at"
            )
        ),
        "links": sorted(
            (sha[commit_id], number[task_id], *rest)
            for commit_id, task_id, *rest in CommitTaskLink.objects.filter(
                commit__repository=repository
            ).values_list("commit_id", "task_id", "action", "status", "minutes", "outcome", "note")
        ),
        "time_entries": sorted(
            (number[task_id], *rest)
            for task_id, *rest in TimeEntry.objects.filter(task__project=project).values_list(
                "task_id", "author_email", "minutes", "spent_on", "source", "source_ref", "note"
            )
        ),
        "task_events": sorted(
            (number[task_id], *rest)
            for task_id, *rest in TaskEvent.objects.filter(project=project).values_list(
                "task_id", "kind", "source", "from_status", "to_status", "commit_sha"
            )
        ),
        "tasks": sorted(Task.objects.filter(project=project).values_list("number", "status")),
    }


def fresh_ingestion(repo: GitRepo, capture: Any) -> Repository:
    """The final state ingested once, by a repository of another project that has never seen it."""
    project = Project.objects.create(key="FRESH", name="Fresh")
    repository = repository_register(project=project, source=str(repo.path))
    with capture(execute=True):
        ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND)
    return repository


def stored_history(repository: Repository) -> list[tuple[Any, ...]]:
    """Churn, commit count and last change of each path in the tree, from the stored file changes."""
    totals: dict[str, list[Any]] = {}
    for path, added, deleted, timestamp in FileChange.objects.filter(repository=repository).values_list(
        "path", "added", "deleted", "commit__timestamp"
    ):
        entry = totals.setdefault(path, [0, 0, timestamp])
        entry[0] += (added or 0) + (deleted or 0)
        entry[1] += 1
        entry[2] = max(entry[2], timestamp)
    paths = File.objects.filter(repository=repository).values_list("path", flat=True)
    return sorted((path, *totals[path]) for path in paths if path in totals)


@hypothesis_settings(
    max_examples=int(os.environ.get("APM_PROPERTY_EXAMPLES", "8")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=steps)
def test_n_runs_equal_one_run_row_for_row(
    sequence, tmp_path_factory, settings, django_capture_on_commit_callbacks
):
    # Each example starts from an empty database: everything it wrote is rolled back at its end.
    with transaction.atomic():
        try:
            _example(sequence, tmp_path_factory, settings, django_capture_on_commit_callbacks)
        finally:
            transaction.set_rollback(True)


def _example(sequence, tmp_path_factory, settings, django_capture_on_commit_callbacks) -> None:
    base = tmp_path_factory.mktemp("repeat")
    settings.APM_REPO_ROOTS = [str(base)]
    settings.APM_WORKSPACE = str(base / "workspace")
    sequence = [*sequence, ("ingest", 1)]  # the final state ingested, so it can be compared

    once = World(base / "once", django_capture_on_commit_callbacks)
    once.play(sequence, repeated=False)
    expected = tables(once.repository, once.project)
    Project.objects.filter(pk=once.project.pk).delete()

    again = World(base / "again", django_capture_on_commit_callbacks)
    again.play(sequence, repeated=True)
    actual = tables(again.repository, again.project)

    assert again.repo.head() == once.repo.head()  # the same history, so the same shas
    for table, rows in expected.items():
        assert actual[table] == rows, table

    # Against a fresh ingestion of the final state.
    fresh = fresh_ingestion(again.repo, django_capture_on_commit_callbacks)
    fresh_tables = tables(fresh, fresh.project)
    on_branch = again.repo.rev_list()
    if not again.force_pushed and not again.side_branch:
        for table in ("commits", "file_changes", "files", "file_histories"):
            assert actual[table] == fresh_tables[table], table
    else:
        # Commits a force push left behind, and those of another branch, stay stored (their links keep
        # their meaning) and count in the history figures; the branch's own commits and the tree are
        # what a fresh ingestion says.
        assert [row for row in actual["commits"] if row[0] in on_branch] == fresh_tables["commits"]
        assert [row for row in actual["file_changes"] if row[0] in on_branch] == fresh_tables["file_changes"]
        tree = [row[:5] for row in actual["files"]]
        assert tree == [row[:5] for row in fresh_tables["files"]]
    # Whatever happened, the running totals are the stored history's.
    assert [(row[0], row[5], row[6], row[7]) for row in actual["files"]] == stored_history(again.repository)
