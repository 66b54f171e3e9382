"""Commits move tasks: links from commits to the tasks their messages name, and what the messages ask.

``commits_link_tasks`` is the one path, used by the ingestion's finish step and by ``link_commits``.
It works in bulk: messages are read in one streaming query, tasks resolved with one query per batch of
numbers, links written with one multi-row insert. Only what a message asks (close, transition, time)
goes task by task, through the task services, so a commit changes a task exactly as the admin or the
API would: same rules, same ``TaskEvent`` (source ``commit``, with the sha), same caches, metrics and
webhooks.

Modes, decided by the caller from the run:

* ``history``: links only. History ingested for the first time and ``link_commits`` never move tasks
  or log time; an actionable link is kept with the outcome ``history``.
* ``pending``: a run of another branch. Links are written; what they ask waits (outcome ``pending``)
  until a run of the default branch reaches the commit (a feature branch merged later).
* ``apply``: a run of the default branch after the first. New links and pending ones are carried out.

Guards: a closed task is never reopened or closed again by a commit; a task waiting on an open
dependency is not closed (the link is kept, the refusal noted on the link and on the run); a sha seen
in two repositories of the project acts once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from projects.models import Project
from repos.grammar import CommitGrammar, Mention, grammar_build
from repos.ingestion import links_write
from repos.models import Commit, CommitTaskLink, Repository
from tasks.models import Task, TaskEvent
from tasks.services import task_time_log, task_transition

Mode = Literal["history", "pending", "apply"]
Outcome = CommitTaskLink.Outcome

# Cheap test before the grammar runs: a message without "X-9" or "#" names no task. Most do not.
# Kept to what every database's regular expressions read the same way (no classes like \d).
_MAY_MENTION = re.compile(r"[A-Za-z0-9]-[0-9]|#")
_BATCH = 1000
# Notes are for people: beyond this many, the run says how many more there were.
MAX_NOTES = 20


def project_grammar(project: Project) -> CommitGrammar:
    """The commit grammar configured on ``project``."""
    return grammar_build(
        project_key=project.key,
        close_keywords=project.commit_close_keywords,
        extra_status_tags=project.commit_status_tags or {},
        statuses=Task.Status.values,
        short_references=project.commit_short_references,
        time_logging=project.commit_time_logging,
    )


@dataclass
class LinkReport:
    """What one pass did, for the run's notes and the command's summary."""

    commits_scanned: int = 0
    links_created: int = 0
    applied: int = 0
    refused: int = 0
    notes: list[str] = field(default_factory=list)
    notes_dropped: int = 0

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)
        else:
            self.notes_dropped += 1

    def notes_for_run(self) -> list[str]:
        extra = [f"... and {self.notes_dropped} more notes of the same kind."] if self.notes_dropped else []
        return self.notes + extra


@dataclass
class _Found:
    commit_id: int
    sha: str
    author_email: str
    authored_at: object
    subject: str
    mention: Mention


def _commits_scan(
    *, repository: Repository, shas: Iterable[str] | None, grammar: CommitGrammar, report: LinkReport
) -> Iterator[_Found]:
    """Mentions of the project's own tasks in the chosen commits (all of them when ``shas`` is None)."""
    columns = ("id", "sha", "message", "author_email", "authored_at")
    # The database drops the messages that cannot name a task before they cross the wire (a regular
    # expression on PostgreSQL and MariaDB, Django's REGEXP function on SQLite).
    commits = Commit.objects.filter(repository=repository, message__regex=_MAY_MENTION.pattern)
    if shas is None:
        report.commits_scanned = Commit.objects.filter(repository=repository).count()
        batches: Iterable[Iterable[tuple]] = [commits.values_list(*columns).iterator(chunk_size=2000)]
    else:
        shas = list(shas)
        report.commits_scanned = len(shas)
        batches = (commits.filter(sha__in=batch).values_list(*columns) for batch in _batched(shas, _BATCH))
    for rows in batches:
        for commit_id, sha, message, author_email, authored_at in rows:
            parsed = grammar.parse(message)
            for problem in parsed.problems:
                report.note(f"{sha[:12]}: {problem}")
            subject = message.split("\n", 1)[0][:200]
            for mention in parsed.mentions:
                # Keys of other projects ("UTF-8", another team's "OPS-3") are not ours to link or report.
                if mention.key == grammar.project_key:
                    yield _Found(commit_id, sha, author_email, authored_at, subject, mention)


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def commits_link_tasks(
    *, repository: Repository, mode: Mode, shas: Iterable[str] | None = None
) -> LinkReport:
    """Link the chosen commits of ``repository`` to the tasks they name; carry out requests per ``mode``.

    Safe to run twice, and beside another run: links are unique per commit and task, a request is
    carried out once per link, and a time entry once per commit and task.
    """
    project = repository.project
    grammar = project_grammar(project)
    report = LinkReport()
    found = list(_commits_scan(repository=repository, shas=shas, grammar=grammar, report=report))
    if not found:
        return report
    tasks = _tasks_by_number(project=project, numbers={item.mention.number for item in found})
    for item in found:
        if item.mention.number not in tasks:
            report.note(f"{item.sha[:12]}: {item.mention.task_key} is not a task of {project.key}.")
    found = [item for item in found if item.mention.number in tasks]
    # Existing links matter to "apply" (pending requests). Elsewhere they only keep the count of new
    # links true, which PostgreSQL's insert reports by itself; a first history skips the lookup there.
    needs_existing = mode == "apply" or connection.vendor != "postgresql"
    existing = _links_existing(commit_ids={item.commit_id for item in found}) if needs_existing else {}

    now = timezone.now()
    new_links: list[dict[str, Any]] = []
    to_apply: list[_Found] = []
    for item in found:
        task = tasks[item.mention.number]
        outcome = existing.get((item.commit_id, task.pk))
        actionable = item.mention.action != CommitTaskLink.Action.REFERENCE
        if outcome is None:
            outcome = Outcome.LINKED
            if actionable:
                outcome = Outcome.HISTORY if mode == "history" else Outcome.PENDING
            new_links.append(
                {
                    "commit_id": item.commit_id,
                    "task_id": task.pk,
                    "action": item.mention.action,
                    "status": item.mention.target_status,
                    "minutes": item.mention.minutes,
                    "outcome": outcome,
                    "note": "",
                    "created_at": now,
                }
            )
            if mode == "apply" and actionable:
                to_apply.append(item)
        elif mode == "apply" and outcome in CommitTaskLink.OPEN_OUTCOMES:
            to_apply.append(item)
    report.links_created = links_write(rows=new_links)
    if to_apply:
        _requests_apply(project=project, tasks=tasks, to_apply=to_apply, report=report)
    return report


def _tasks_by_number(*, project: Project, numbers: set[int]) -> dict[int, Task]:
    tasks: dict[int, Task] = {}
    ordered = sorted(numbers)
    for start in range(0, len(ordered), _BATCH):
        for task in Task.objects.filter(project=project, number__in=ordered[start : start + _BATCH]):
            task.project = project  # task.key needs it; one project for all
            tasks[task.number] = task
    return tasks


def _links_existing(*, commit_ids: set[int]) -> dict[tuple[int, int], str]:
    """{(commit id, task id): outcome} of the links these commits already have."""
    links: dict[tuple[int, int], str] = {}
    ordered = sorted(commit_ids)
    for start in range(0, len(ordered), _BATCH):
        rows = CommitTaskLink.objects.filter(commit_id__in=ordered[start : start + _BATCH]).values_list(
            "commit_id", "task_id", "outcome"
        )
        for commit_id, task_id, outcome in rows:
            links[(commit_id, task_id)] = outcome
    return links


def _requests_apply(
    *,
    project: Project,
    tasks: dict[int, Task],
    to_apply: list[_Found],
    report: LinkReport,
) -> None:
    """Carry out what the messages ask, oldest commit first, each through the task services."""
    to_apply.sort(key=lambda item: (item.authored_at, item.commit_id))
    done_elsewhere = _shas_acted_on(
        task_ids={tasks[item.mention.number].pk for item in to_apply},
        shas={item.sha for item in to_apply},
    )
    users = _users_by_email({item.author_email for item in to_apply if item.mention.minutes})
    for item in to_apply:
        task = tasks[item.mention.number]
        if (item.sha, task.pk) in done_elsewhere:
            outcome, note = (
                Outcome.UNCHANGED,
                "This commit already acted on the task from another repository.",
            )
        elif not project.commit_automation:
            outcome, note = Outcome.DISABLED, f"Commit automation is off in {project.key}."
        else:
            outcome, note = _request_apply(item=item, task=task, user=users.get(item.author_email.lower()))
        if outcome == Outcome.APPLIED:
            report.applied += 1
            done_elsewhere.add((item.sha, task.pk))
        elif outcome == Outcome.REFUSED:
            report.refused += 1
            report.note(f"{item.sha[:12]}: {note}")
        CommitTaskLink.objects.filter(commit_id=item.commit_id, task=task).update(
            outcome=outcome, note=note[:500]
        )


def _request_apply(*, item: _Found, task: Task, user: object | None) -> tuple[str, str]:
    """Apply one commit's request to one task; return the link's outcome and a note for people."""
    mention = item.mention
    status = mention.target_status
    outcome, notes = Outcome.UNCHANGED, []
    if status:
        if task.status == status:
            notes.append(f"{task.key} is already {task.get_status_display().lower()}.")
        elif task.is_closed:
            outcome = Outcome.REFUSED
            notes.append(
                f"{task.key} is {task.get_status_display().lower()}: a commit never reopens a closed task "
                "or closes it again."
            )
        else:
            try:
                with transaction.atomic():
                    task_transition(
                        task=task,
                        status=status,
                        source=TaskEvent.Source.COMMIT,
                        commit_sha=item.sha,
                        note=f"{item.sha[:12]} {item.subject}",
                    )
                outcome = Outcome.APPLIED
            except ValidationError as exc:
                outcome = Outcome.REFUSED
                notes.append(f"{task.key} not moved to {status}: {'; '.join(exc.messages)}")
    if mention.minutes:
        entry = task_time_log(
            task=task,
            minutes=mention.minutes,
            spent_on=item.authored_at.date(),  # type: ignore[attr-defined]
            source=TaskEvent.Source.COMMIT,
            user=user,  # type: ignore[arg-type]
            author_email=item.author_email,
            commit_sha=item.sha,
            note=item.subject,
        )
        if entry is not None and outcome == Outcome.UNCHANGED:
            outcome = Outcome.APPLIED
        notes.append(f"{mention.minutes} min logged." if entry is not None else "Time already logged.")
    return outcome, " ".join(notes)


def _shas_acted_on(*, task_ids: set[int], shas: set[str]) -> set[tuple[str, int]]:
    """(sha, task id) pairs a commit with that sha already acted on, in any repository of the project."""
    return set(
        CommitTaskLink.objects.filter(
            task_id__in=task_ids, commit__sha__in=shas, outcome__in=[Outcome.APPLIED, Outcome.REFUSED]
        ).values_list("commit__sha", "task_id")
    )


def _users_by_email(emails: set[str]) -> dict[str, object]:
    """Active users by lower-cased email, for time entries; an email two users share names nobody."""
    if not emails:
        return {}
    users: dict[str, object] = {}
    shared: set[str] = set()
    lowered = {email.lower() for email in emails if email}
    for user in get_user_model().objects.filter(email__in=lowered, is_active=True):
        key = user.email.lower()
        if key in users:
            shared.add(key)
        users[key] = user
    return {email: user for email, user in users.items() if email not in shared}
