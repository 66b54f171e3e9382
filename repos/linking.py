"""Commits move tasks: links from commits to the tasks their messages name, and what the messages ask.

Two steps, both in bulk:

* ``commits_link_tasks`` writes the links. Ingestion calls it in every commit chunk, with the messages
  it has just parsed (so the links are written in parallel, like the commits, and no message is read
  back); ``link_commits`` calls it over the stored history. Tasks are resolved with one query per batch
  of numbers and links written with one multi-row insert (``COPY`` on PostgreSQL). A link records what
  its message asked (``action``, ``status``, ``minutes``); what becomes of the request is its outcome.
* ``commits_requests_apply`` carries out the requests still ``pending`` on the commits of a run of the
  default branch, in the finish step, oldest commit first, each through the task services: a commit
  changes a task exactly as the admin or the API would (same rules, same ``TaskEvent`` with source
  ``commit`` and the sha, same caches, metrics and webhooks).

Modes of ``commits_link_tasks``:

* ``history``: history ingested for the first time, and ``link_commits``. An actionable link is kept with
  the outcome ``history`` and never carried out.
* ``pending``: any later run. An actionable link waits as ``pending``: a run of the default branch
  carries it out at its finish; a run of another branch leaves it for the day the default branch
  reaches the commit (a feature branch merged later).

Guards: a closed task is never reopened or closed again by a commit; a task waiting on an open
dependency is not closed (the link is kept, the refusal noted on the link and on the run); a sha seen
in two repositories of the project acts once.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from monitoring.metrics import COMMIT_REQUESTS, COMMIT_TASK_LINKS
from projects.models import Project
from repos.grammar import CommitGrammar, Mention, grammar_build
from repos.ingestion.writers import links_write
from repos.models import Commit, CommitTaskLink, Repository
from tasks.models import Task, TaskEvent
from tasks.services import task_time_log, task_transition

Mode = Literal["history", "pending"]
Outcome = CommitTaskLink.Outcome

# Cheap test before the grammar runs: a message without "X-9" or "#" names no task. Most do not.
# Kept to what every database's regular expressions read the same way (no classes like \d).
_MAY_MENTION = re.compile(r"[A-Za-z0-9]-[0-9]|#")
_BATCH = 1000
# Mentions resolved and written together by commits_link_tasks.
_MENTIONS_BATCH = 5000
T = TypeVar("T")
# Notes are for people: beyond this many, the run says how many more there were.
MAX_NOTES = 20
# Task keys named as examples in the one line about references to tasks that do not exist.
UNKNOWN_EXAMPLES = 3


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
    """What one pass did, for the run's notes and the command's summary.

    References to tasks that do not exist (``APM-999``) are counted, with a few examples, rather than
    noted one by one: a history that uses another numbering (pull requests, an old tracker) names
    thousands, and one line saying so is what people need (``unknown_note``).
    """

    commits_scanned: int = 0
    links_created: int = 0
    applied: int = 0
    refused: int = 0
    notes: list[str] = field(default_factory=list)
    notes_dropped: int = 0
    unknown_references: int = 0
    unknown_examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)
        else:
            self.notes_dropped += 1

    def unknown_add(self, task_key: str, *, count: int = 1) -> None:
        """Count ``count`` references to ``task_key``, a task that does not exist."""
        self.unknown_references += count
        if task_key not in self.unknown_examples and len(self.unknown_examples) < UNKNOWN_EXAMPLES:
            self.unknown_examples.append(task_key)

    def merge(self, other: LinkReport) -> None:
        self.commits_scanned += other.commits_scanned
        self.links_created += other.links_created
        self.applied += other.applied
        self.refused += other.refused
        for text in other.notes:
            self.note(text)
        self.notes_dropped += other.notes_dropped
        self.unknown_references += other.unknown_references
        for task_key in other.unknown_examples:
            self.unknown_add(task_key, count=0)

    def unknown_note(self) -> str | None:
        """The one line about references to unknown tasks, or None when there were none."""
        return unknown_note_text(self.unknown_references, self.unknown_examples)

    def notes_for_run(self) -> list[str]:
        """The notes for people: the line about unknown tasks first, then at most MAX_NOTES notes and
        one line for the rest."""
        unknown = self.unknown_note()
        extra = [f"... and {self.notes_dropped} more notes of the same kind."] if self.notes_dropped else []
        return [*([unknown] if unknown else []), *self.notes, *extra]


def unknown_note_text(count: int, examples: Sequence[str]) -> str | None:
    """``37 references to unknown tasks, e.g. APM-999, APM-1000, APM-1234.`` (None when ``count`` is 0)."""
    if count <= 0:
        return None
    if count == 1:
        return f"1 reference to an unknown task: {examples[0]}."
    return f"{count} references to unknown tasks, e.g. {', '.join(examples)}."


# What unknown_note_text writes, read back by run_notes_merge.
_UNKNOWN_NOTE = re.compile(
    r"(?P<count>\d+) references? to (?:an )?unknown tasks?(?:, e\.g\.|:) (?P<examples>[^.]*)\."
)


def run_notes_merge(notes: Sequence[str], new: Sequence[str]) -> tuple[list[str], list[str]]:
    """Fold the unknown-task line of ``new`` into the one ``notes`` already has.

    Each commit chunk of an ingestion reports on its own commits, in parallel; folded, the run keeps one
    line for the whole run ("5120 references to unknown tasks, e.g. ...") instead of one per chunk.
    Returns the run's notes (with the line updated in place, or unchanged) and what is left of ``new``
    to append.
    """
    notes, rest = list(notes), list(new)
    incoming = next((text for text in rest if _UNKNOWN_NOTE.fullmatch(text)), None)
    held = next((index for index, text in enumerate(notes) if _UNKNOWN_NOTE.fullmatch(text)), None)
    if incoming is None or held is None:
        return notes, rest
    rest.remove(incoming)
    total = 0
    examples: list[str] = []
    for match in (_UNKNOWN_NOTE.fullmatch(notes[held]), _UNKNOWN_NOTE.fullmatch(incoming)):
        if match is None:
            continue  # both matched above
        total += int(match["count"])
        for task_key in match["examples"].split(", "):
            if task_key not in examples and len(examples) < UNKNOWN_EXAMPLES:
                examples.append(task_key)
    notes[held] = unknown_note_text(total, examples) or notes[held]
    return notes, rest


@dataclass(frozen=True)
class CommitText:
    """What linking needs of a commit: its row id and what its message and author say."""

    id: int
    sha: str
    message: str
    author_email: str
    authored_at: datetime.datetime


@dataclass
class _Request:
    """A pending link's request, with its commit, ready to be carried out."""

    commit_id: int
    sha: str
    author_email: str
    authored_at: datetime.datetime
    subject: str
    task: Task
    status: str
    minutes: int


def _stored_commits(*, repository: Repository, report: LinkReport) -> Iterator[CommitText]:
    """Every stored commit of ``repository`` whose message may name a task, streamed."""
    report.commits_scanned = Commit.objects.filter(repository=repository).count()
    # The database drops the messages that cannot name a task before they cross the wire (a regular
    # expression on PostgreSQL and MariaDB, Django's REGEXP function on SQLite).
    rows = (
        Commit.objects.filter(repository=repository, message__regex=_MAY_MENTION.pattern)
        .values_list("id", "sha", "message", "author_email", "authored_at")
        .iterator(chunk_size=2000)
    )
    for row in rows:
        yield CommitText(*row)


def _mentions(
    commits: Iterable[CommitText], *, grammar: CommitGrammar, report: LinkReport
) -> Iterator[tuple[CommitText, Mention]]:
    """The project's own tasks each commit names, with what it asks; problems go to the report."""
    for commit in commits:
        if not _MAY_MENTION.search(commit.message):
            continue
        parsed = grammar.parse(commit.message)
        for problem in parsed.problems:
            report.note(f"{commit.sha[:12]}: {problem}")
        for mention in parsed.mentions:
            # Keys of other projects ("UTF-8", another team's "OPS-3") are not ours to link or report.
            if mention.key == grammar.project_key:
                yield commit, mention


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def commits_link_tasks(
    *,
    repository: Repository,
    mode: Mode,
    commits: Sequence[CommitText] | None = None,
    new_commits: bool = False,
) -> LinkReport:
    """Link ``commits`` of ``repository`` (all its stored commits when None) to the tasks they name.

    Writes links only; never moves a task. Safe to run twice, and beside another run: a link is unique
    per commit and task, and one that exists keeps its outcome. ``new_commits``: the caller's own
    transaction inserted these commits, so none of them has a link yet (nothing to look up or skip).
    """
    project = repository.project
    grammar = project_grammar(project)
    report = LinkReport()
    if commits is None:
        source: Iterable[CommitText] = _stored_commits(repository=repository, report=report)
    else:
        report.commits_scanned = len(commits)
        source = commits
    # In batches, so that memory stays flat however long the history link_commits reads.
    for batch in _batched(_mentions(source, grammar=grammar, report=report), _MENTIONS_BATCH):
        report.links_created += _links_batch_write(
            project=project, mode=mode, found=batch, report=report, new_commits=new_commits
        )
    created = report.links_created
    transaction.on_commit(lambda: COMMIT_TASK_LINKS.inc(created))
    return report


def _links_batch_write(
    *,
    project: Project,
    mode: Mode,
    found: list[tuple[CommitText, Mention]],
    report: LinkReport,
    new_commits: bool,
) -> int:
    tasks = _task_ids_by_number(project=project, numbers={mention.number for _, mention in found})
    now = timezone.now()
    rows: list[dict[str, Any]] = []
    for commit, mention in found:
        task_id = tasks.get(mention.number)
        if task_id is None:
            report.unknown_add(mention.task_key)
            continue
        outcome = Outcome.LINKED
        if mention.action != CommitTaskLink.Action.REFERENCE:
            outcome = Outcome.HISTORY if mode == "history" else Outcome.PENDING
        rows.append(
            {
                "commit_id": commit.id,
                "task_id": task_id,
                "action": mention.action,
                "status": mention.target_status,
                "minutes": mention.minutes,
                "outcome": outcome,
                "note": "",
                "created_at": now,
            }
        )
    if connection.vendor != "postgresql" and not new_commits:
        # PostgreSQL's insert reports what it added; elsewhere the links already there are left out
        # first, so the count of new links stays true.
        existing = _links_existing(commit_ids={row["commit_id"] for row in rows})
        rows = [row for row in rows if (row["commit_id"], row["task_id"]) not in existing]
    return links_write(rows=rows, new_commits=new_commits)


def _task_ids_by_number(*, project: Project, numbers: set[int]) -> dict[int, int]:
    ids: dict[int, int] = {}
    ordered = sorted(numbers)
    for start in range(0, len(ordered), _BATCH):
        ids.update(
            Task.objects.filter(project=project, number__in=ordered[start : start + _BATCH]).values_list(
                "number", "pk"
            )
        )
    return ids


def _links_existing(*, commit_ids: set[int]) -> set[tuple[int, int]]:
    """(commit id, task id) of the links these commits already have."""
    links: set[tuple[int, int]] = set()
    ordered = sorted(commit_ids)
    for start in range(0, len(ordered), _BATCH):
        links.update(
            CommitTaskLink.objects.filter(commit_id__in=ordered[start : start + _BATCH]).values_list(
                "commit_id", "task_id"
            )
        )
    return links


def commits_requests_apply(*, repository: Repository, shas: Iterable[str]) -> LinkReport:
    """Carry out the pending requests of the commits ``shas`` of ``repository``, oldest commit first.

    Called by the finish step of a run of the default branch with the run's commits: the links written
    by its chunks, and those a run of another branch left pending on the same commits.
    """
    project = repository.project
    report = LinkReport()
    requests: list[_Request] = []
    for batch in _batched(shas, _BATCH):
        pending = CommitTaskLink.objects.filter(
            commit__repository=repository, commit__sha__in=batch, outcome__in=CommitTaskLink.OPEN_OUTCOMES
        ).select_related("commit", "task")
        for link in pending:
            link.task.project = project
            commit = link.commit
            requests.append(
                _Request(
                    commit_id=link.commit_id,
                    sha=commit.sha,
                    author_email=commit.author_email,
                    authored_at=commit.authored_at,
                    subject=commit.message.split("\n", 1)[0][:200],
                    task=link.task,
                    status=link.status,
                    minutes=link.minutes,
                )
            )
    if requests:
        _requests_apply(project=project, requests=requests, report=report)
    return report


def commits_requests_to_history(*, repository: Repository, shas: Iterable[str]) -> int:
    """Make the pending requests of the commits ``shas`` history (never carried out); return how many."""
    changed = 0
    for batch in _batched(shas, _BATCH):
        commit_ids = Commit.objects.filter(repository=repository, sha__in=batch).values("id")
        changed += CommitTaskLink.objects.filter(
            commit_id__in=commit_ids, outcome__in=CommitTaskLink.OPEN_OUTCOMES
        ).update(outcome=Outcome.HISTORY)
    return changed


def _requests_apply(*, project: Project, requests: list[_Request], report: LinkReport) -> None:
    """Carry out what the messages ask, oldest commit first, each through the task services."""
    # Oldest first; ties broken by sha and task, the same in every repository, so two runs moving the
    # same tasks lock them in the same order.
    requests.sort(key=lambda request: (request.authored_at, request.sha, request.task.pk))
    done_elsewhere = _shas_acted_on(
        task_ids={request.task.pk for request in requests}, shas={request.sha for request in requests}
    )
    users = _users_by_email({request.author_email for request in requests if request.minutes})
    # One instance per task, so that a second request on the same task sees the first one's result.
    tasks = {request.task.pk: request.task for request in requests}
    outcome: str
    for request in requests:
        request.task = tasks[request.task.pk]
        if (request.sha, request.task.pk) in done_elsewhere:
            outcome, note = (
                Outcome.UNCHANGED,
                "This commit already acted on the task from another repository.",
            )
        elif not project.commit_automation:
            outcome, note = Outcome.DISABLED, f"Commit automation is off in {project.key}."
        else:
            outcome, note = _request_apply(request, user=users.get(request.author_email.lower()))
        if outcome == Outcome.APPLIED:
            report.applied += 1
            done_elsewhere.add((request.sha, request.task.pk))
        elif outcome == Outcome.REFUSED:
            report.refused += 1
            report.note(f"{request.sha[:12]}: {note}")
        CommitTaskLink.objects.filter(commit_id=request.commit_id, task=request.task).update(
            outcome=outcome, note=note[:500]
        )

        def count(outcome: str = outcome) -> None:
            COMMIT_REQUESTS.labels(outcome=outcome).inc()

        transaction.on_commit(count)


def _request_apply(request: _Request, *, user: object | None) -> tuple[str, str]:
    """Apply one commit's request to its task; return the link's outcome and a note for people."""
    task, status = request.task, request.status
    outcome, notes = Outcome.UNCHANGED, []
    if status:
        if task.status == status:
            notes.append(f"{task.key} is already {task.get_status_display().lower()}.")
        else:
            try:
                # task_transition is atomic itself, and refuses before it writes anything.
                task_transition(
                    task=task,
                    status=status,
                    source=TaskEvent.Source.COMMIT,
                    commit_sha=request.sha,
                    note=f"{request.sha[:12]} {request.subject}",
                    keep_closed=True,  # never reopened or closed again by a commit
                )
                outcome = Outcome.APPLIED
            except ValidationError as exc:
                outcome = Outcome.REFUSED
                notes.append(f"{task.key} not moved to {status}: {'; '.join(exc.messages)}")
    if request.minutes:
        entry = task_time_log(
            task=task,
            minutes=request.minutes,
            spent_on=request.authored_at.date(),
            source=TaskEvent.Source.COMMIT,
            user=user,  # type: ignore[arg-type]
            author_email=request.author_email,
            commit_sha=request.sha,
            note=request.subject,
        )
        if entry is not None and outcome == Outcome.UNCHANGED:
            outcome = Outcome.APPLIED
        notes.append(f"{request.minutes} min logged." if entry is not None else "Time already logged.")
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
    users_by_lowered = get_user_model().objects.annotate(email_lowered=Lower("email"))
    for user in users_by_lowered.filter(email_lowered__in=lowered, is_active=True):
        key = user.email.lower()
        if key in users:
            shared.add(key)
        users[key] = user
    return {email: user for email, user in users.items() if email not in shared}
