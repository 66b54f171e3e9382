"""The ingestion pipeline: the steps of a run, which the Celery tasks (repos.tasks) call one by one.

Runs are requested by repos.services (``ingestion_request``); the rows are written in bulk by
repos.ingestion.writers. An ingestion runs in steps, each recorded on its ``IngestionRun``:

1. **mirror**  every source is cloned (``--mirror``) into ``APM_WORKSPACE`` once and fetched afterwards,
   on whichever worker needs it; the mirror carries a commit-graph and proves it is the repository's.
2. **plan**    the branch tip, the commits new since the last ingested tip and their chunks, and how
   the file index is brought up to date (``files_scope``: the whole tree, the changed paths, nothing).
3. **commits** each chunk streams one ``git log --raw --numstat`` and writes in bulk (``writers.py``),
   with its task links and, in an incremental run, its commits' figures added to the per-path totals.
4. **files**   the planned tree entries in slices, beside the commit chunks: sizes, lines from
   ``cat-file --batch``; paths that left the tree are dropped.
5. **finish**  the per-path totals copied onto the files the run touched (rebuilt first after a walk of
   the whole branch or tree), requests carried out, the new tip recorded, caches invalidated.

N runs equal one run: every row has a natural unique key and is inserted with conflicts ignored; a
chunk's progress and figures are counted once (``chunks_done``, under the run's row lock); a late chunk
of an abandoned run writes nothing; after a run that failed, the next one lists the whole tree and
rebuilds the figures. A run killed anywhere is finished by the next run, or, when its worker died
outright, resumed by the schedule (``repos.services.ingestion_runs_resume``).

History rewritten by a force push (the last ingested tip is no longer an ancestor of the branch): the
whole branch is walked again; commits already stored are skipped by their unique key, new ones are
added, and the stored commits that left the branch are kept (their links to tasks stay meaningful) and
counted in the run's notes.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apm.jobs import task_enqueue
from monitoring.metrics import INGESTED_COMMITS, INGESTION_DURATION, INGESTION_RUNS
from projects.services import project_cache_invalidate
from repos.git import (
    GitError,
    RepositorySource,
    git_run,
    source_parse,
)
from repos.gitlog import ParsedCommit, blobs_read, commits_read, log_revisions, tree_changes_read, tree_read
from repos.ingestion.writers import (
    CommitsWritten,
    chunk_durability_relax,
    commits_write,
    file_histories_add,
    file_histories_rebuild,
    files_delete,
    files_history_refresh,
    files_write,
    statistics_outdated,
    tables_analyze,
)
from repos.languages import language_of
from repos.linking import (
    CommitText,
    LinkReport,
    Mode,
    commits_link_tasks,
    commits_requests_apply,
    commits_requests_to_history,
    run_notes_merge,
)
from repos.models import CommitTaskLink, File, IngestionRun, Repository
from webhooks.services import webhook_event_emit

Status = IngestionRun.Status
ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
# insights.tasks: records a project's health (insights sits above repos, so it is queued by name).
HEALTH_RECOMPUTE_TASK = "projects.health_recompute"


def run_fail(run: IngestionRun, reason: str) -> None:
    """Mark ``run`` failed with ``reason`` unless it already ended (and let the repository know)."""
    failed = IngestionRun.objects.filter(pk=run.pk, status__in=ACTIVE_STATUSES).update(
        status=Status.FAILED, error=reason[:5000], finished_at=timezone.now()
    )
    if failed:
        INGESTION_RUNS.labels(status=Status.FAILED).inc()
        # Outgoing webhooks (webhooks.services): only the call that marked the run failed emits.
        run = IngestionRun.objects.select_related("repository").get(pk=run.pk)
        # Chunks may have written commits before the failure: the project's figures count them.
        project_cache_invalidate(project_id=run.repository.project_id)
        webhook_event_emit(
            project_id=run.repository.project_id,
            event="ingestion.failed",
            data={
                "run": run.pk,
                "repository": {"id": run.repository_id, "name": run.repository.name},
                "reason": reason[:1000],
            },
        )


def ingestion_fail(*, run_id: int, reason: str) -> None:
    """Mark the run failed with ``reason`` (a line for people, not a traceback)."""
    run_fail(IngestionRun(pk=run_id), reason)


def ingestion_heartbeat(*, run_id: int) -> None:
    """Record that a worker is still at work on the run (while a step runs, every few seconds)."""
    IngestionRun.objects.filter(pk=run_id, status=Status.RUNNING).update(heartbeat_at=timezone.now())


def ingestion_resume_claim(*, run_id: int, since: datetime.datetime) -> bool:
    """Take the resumption of a run that was found silent at ``since``; False when a worker has been
    heard from since then (or another resumption took it, or the run ended), and nothing is to be done.

    "Silent at ``since``" is the heartbeat that ``repos.services.ingestion_runs_resume`` recorded when it
    queued the resumption: any later heartbeat moved it.
    """
    return bool(
        IngestionRun.objects.filter(pk=run_id, status=Status.RUNNING, heartbeat_at=since).update(
            heartbeat_at=timezone.now()
        )
    )


@contextmanager
def _timed(run_id: int, step: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    elapsed = round(time.perf_counter() - started, 3)
    with transaction.atomic():
        run = IngestionRun.objects.select_for_update().get(pk=run_id)
        run.timings = {**run.timings, step: round(run.timings.get(step, 0) + elapsed, 3)}
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["timings", "heartbeat_at"])


# --- Step 1: the git directory ------------------------------------------------------------------------


def repository_mirror_path(*, repository: Repository) -> Path:
    """Where this repository's mirror lives in ``APM_WORKSPACE`` (named by its id and its mirror key)."""
    return Path(settings.APM_WORKSPACE) / f"repository-{repository.pk}-{repository.mirror_key}.git"


def repository_git_dir(*, repository: Repository, fetch: bool, needs: str = "") -> str:
    """The mirror of ``repository`` on this machine, created (or rebuilt) when missing or not its own.

    Every source, local or remote, is read from a mirror APM owns under ``APM_WORKSPACE``: git never
    runs inside someone else's repository (whose configuration could name programs to run), and the
    mirror can carry a commit-graph, which makes every history walk of the run several times faster.
    Local sources are cloned with hard links, so their mirror costs almost no disk and no copying.

    A mirror proves it belongs to the repository: its config carries the repository's mirror key and
    its origin is the repository's source. One that does not (another installation's, a source changed
    since, a half-removed directory) is rebuilt, never read.

    ``fetch`` updates an existing mirror. Without it the mirror is only fetched when it lacks ``needs``
    (the tip a run planned): each worker may have a workspace of its own, older than the run, and a
    chunk reads the run's commits up to that tip, never newer ones.
    """
    mirror = repository_mirror_path(repository=repository)
    # Reading a mirror that is this repository's and holds the run's tip touches neither the source nor
    # the network: the source is checked (source_parse) and reached only to clone or fetch.
    if not fetch and _mirror_usable(mirror, repository=repository, needs=needs):
        return str(mirror)
    parsed = source_parse(repository.source)
    remote = parsed.location if parsed.kind == Repository.Kind.REMOTE else None
    mirror.parent.mkdir(parents=True, exist_ok=True)
    # One clone or fetch of a mirror at a time on this machine: two chunk tasks of a worker that both
    # find the tip missing would otherwise fight over git's ref locks. Readers need no lock: git adds
    # objects before it moves refs.
    with _mirror_lock(mirror):
        if not _mirror_owned(mirror, repository=repository, location=parsed.location):
            _mirror_clone(mirror, repository=repository, parsed=parsed, remote=remote)
        elif fetch or (needs and not _has_commit(str(mirror), needs)):
            git_run(
                "fetch", "--quiet", "--prune", "--no-recurse-submodules", "origin",
                git_dir=str(mirror), remote=remote,
            )  # fmt: skip
            _commit_graph_write(str(mirror))
    if needs and not _has_commit(str(mirror), needs):
        raise GitError(
            f"commit {needs[:12]} is no longer in the source (the branch was rewritten during the run)"
        )
    if needs:
        _mirror_verified((str(mirror), repository.mirror_key, repository.source, needs))
    return str(mirror)


# (mirror, key, source, tip) this process found to be the repository's own mirror holding the tip: the
# next chunks of the run read it without asking git again. A mirror never loses a commit it fetched.
# Bounded: a worker lives for weeks and sees a new tip per repository every run.
_MIRRORS_VERIFIED: set[tuple[str, str, str, str]] = set()
_MIRRORS_VERIFIED_MAX = 4096


def _mirror_verified(verified: tuple[str, str, str, str]) -> None:
    if len(_MIRRORS_VERIFIED) >= _MIRRORS_VERIFIED_MAX:
        _MIRRORS_VERIFIED.clear()
    _MIRRORS_VERIFIED.add(verified)


def _mirror_usable(mirror: Path, *, repository: Repository, needs: str) -> bool:
    verified = (str(mirror), repository.mirror_key, repository.source, needs)
    if needs and verified in _MIRRORS_VERIFIED and (mirror / "HEAD").exists():
        return True
    usable = _mirror_owned(mirror, repository=repository) and (not needs or _has_commit(str(mirror), needs))
    if usable and needs:
        _mirror_verified(verified)
    return usable


def _mirror_owned(mirror: Path, *, repository: Repository, location: str | None = None) -> bool:
    """Whether ``mirror`` was made for this repository from its current source (both in its config).

    ``location``: the checked source git would fetch from, compared with the mirror's origin too.
    """
    if mirror.is_symlink() or not (mirror / "HEAD").exists():
        return False
    try:
        config = git_run(
            "config", "--null", "--get-regexp", r"^(apm\.repository|apm\.source|remote\.origin\.url)$",
            git_dir=str(mirror), timeout=30,
        )  # fmt: skip
    except GitError:
        return False
    values = dict(entry.split("\n", 1) for entry in config.split("\0") if "\n" in entry)
    return (
        values.get("apm.repository") == repository.mirror_key
        and values.get("apm.source") == repository.source
        and (location is None or values.get("remote.origin.url") == location)
    )


def _mirror_clone(
    mirror: Path, *, repository: Repository, parsed: RepositorySource, remote: str | None
) -> None:
    partial = mirror.with_name(f"{mirror.name}.partial-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(partial, ignore_errors=True)  # what a clone that failed here before left behind
    hard_links = [] if parsed.kind == Repository.Kind.LOCAL else ["--no-hardlinks"]
    git_run("clone", "--mirror", "--quiet", *hard_links, "--", parsed.location, str(partial), remote=remote)
    git_run("config", "apm.repository", repository.mirror_key, git_dir=str(partial), timeout=30)
    git_run("config", "apm.source", repository.source, git_dir=str(partial), timeout=30)
    _commit_graph_write(str(partial))
    if mirror.is_symlink():  # planted or dangling: never followed, never trusted
        mirror.unlink()
    elif mirror.exists():  # not this repository's: set aside first, so no reader ever sees half of it
        stale = mirror.with_name(f"{mirror.name}.stale-{os.getpid()}-{threading.get_ident()}")
        mirror.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    partial.rename(mirror)


@contextmanager
def _mirror_lock(mirror: Path) -> Iterator[None]:
    with open(mirror.with_name(f"{mirror.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _has_commit(git_dir: str, sha: str) -> bool:
    try:
        git_run("cat-file", "-e", "--end-of-options", f"{sha}^{{commit}}", git_dir=git_dir, timeout=60)
    except GitError:
        return False
    return True


def _commit_graph_write(git_dir: str) -> None:
    # Incremental (--split): each run adds the new commits' layer instead of rewriting the whole graph.
    git_run("commit-graph", "write", "--reachable", "--split", git_dir=git_dir)


def _branch_tip(git_dir: str, branch: str) -> tuple[str, str]:
    """(branch, tip sha); ("", "") for a repository without commits."""
    if not git_run("for-each-ref", "--count=1", "refs/heads/", git_dir=git_dir, timeout=60).strip():
        return "", ""
    branch = branch or _head_branch(git_dir)
    try:
        tip = git_run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"refs/heads/{branch}^{{commit}}",
            git_dir=git_dir, timeout=60,
        ).strip()  # fmt: skip
    except GitError as exc:
        raise GitError(f"branch {branch!r} does not exist in the repository") from exc
    return branch, tip


def _head_branch(git_dir: str) -> str:
    """The branch the mirror's HEAD names (the source's default branch); "" when there is none."""
    try:
        return git_run("symbolic-ref", "--quiet", "--short", "HEAD", git_dir=git_dir, timeout=60).strip()
    except GitError:
        return ""


def _is_ancestor(git_dir: str, ancestor: str, descendant: str) -> bool:
    try:
        git_run(
            "merge-base",
            "--is-ancestor",
            "--end-of-options",
            ancestor,
            descendant,
            git_dir=git_dir,
            timeout=120,
        )
    except GitError:
        return False
    return True


# --- Step 2: plan -------------------------------------------------------------------------------------


# One tree entry as handed to a file chunk: (path, mode, blob sha or "", size).
TreeSlice = list[tuple[str, str, str, int]]


@dataclass(frozen=True)
class IngestionPlan:
    run_id: int
    commit_chunks: list[tuple[int, int]]  # (skip, count) of each chunk of new commits
    file_slices: list[TreeSlice]  # the tree at the tip, cut for the file chunks


def ingestion_plan(*, run_id: int) -> IngestionPlan:
    """Mirror the repository, find the new commits and cut them into chunks; the run starts here."""
    started = IngestionRun.objects.filter(pk=run_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    run = IngestionRun.objects.select_related("repository").get(pk=run_id)
    if not started and run.status != Status.RUNNING:
        return IngestionPlan(run_id=run_id, commit_chunks=[], file_slices=[])  # finished or failed meanwhile
    repository = run.repository
    if not started and run.files_scope:
        return _plan_again(run)  # a second delivery of this task: the run keeps the plan it recorded
    with _timed(run_id, "mirror"):
        git_dir = repository_git_dir(repository=repository, fetch=True)
    with _timed(run_id, "plan"):
        # The default branch is the one the repository follows, or, before one is recorded, the
        # source's HEAD: a first run asked for another branch must not make that branch the default.
        default = repository.default_branch or _head_branch(git_dir)
        branch, tip = _branch_tip(git_dir, run.branch or default)
        on_default = branch == (default or branch)
        start = repository.last_ingested_sha if on_default else ""
        notes = list(run.notes)
        if start and tip and not _is_ancestor(git_dir, start, tip):
            notes.append(
                f"History was rewritten: {start[:12]} is no longer on {branch}; the branch was walked again "
                "and commits already stored were kept."
            )
            start = ""
        if start == tip:
            total = 0
        elif tip:
            total = int(
                git_run(
                    "rev-list",
                    "--count",
                    "--end-of-options",
                    *log_revisions(tip=tip, exclude=start),
                    git_dir=git_dir,
                )
            )
        else:
            total = 0
        scope = _files_scope(repository=repository, on_default=on_default, start=start, tip=tip)
        with transaction.atomic():
            # The repository's row before the run's, the one lock order (ingestion_finish says why).
            Repository.objects.select_for_update().filter(pk=repository.pk).first()
            # Recorded once: of two deliveries of this task planning at the same time, the second
            # takes the plan the first recorded (the same tip, the same chunks).
            recorded = IngestionRun.objects.filter(pk=run_id, files_scope="").update(
                branch=branch, from_sha=start, to_sha=tip, commits_total=total, notes=notes, files_scope=scope
            )
            if recorded and scope in (IngestionRun.FilesScope.TREE, IngestionRun.FilesScope.CHANGES):
                Repository.objects.filter(pk=repository.pk).update(files_unsettled=True)
        if not recorded:
            return _plan_again(IngestionRun.objects.select_related("repository").get(pk=run_id))
    return _plan_cut(run_id=run_id, git_dir=git_dir, total=total, scope=scope, start=start, tip=tip)


def _plan_again(run: IngestionRun) -> IngestionPlan:
    """The chunks of a plan already recorded on ``run`` (from, to, scope): the same offsets over the
    same commits, so the chunks already written are recognised, and never commits pushed since."""
    git_dir = repository_git_dir(repository=run.repository, fetch=False, needs=run.to_sha)
    return _plan_cut(
        run_id=run.pk,
        git_dir=git_dir,
        total=run.commits_total,
        scope=run.files_scope,
        start=run.from_sha,
        tip=run.to_sha,
        done=run.chunks_done,
    )


def _plan_cut(
    *, run_id: int, git_dir: str, total: int, scope: str, start: str, tip: str, done: Sequence[int] = ()
) -> IngestionPlan:
    """The commit chunks (but those ``done``) and the file slices of a plan."""
    size = settings.APM_INGEST_CHUNK_COMMITS
    return IngestionPlan(
        run_id=run_id,
        commit_chunks=[(skip, min(size, total - skip)) for skip in range(0, total, size) if skip not in done],
        # The file step needs only the tip, so its chunks run beside the commit chunks.
        file_slices=_files_plan(run_id=run_id, git_dir=git_dir, scope=scope, start=start, tip=tip),
    )


def _files_scope(*, repository: Repository, on_default: bool, start: str, tip: str) -> str:
    """How this run brings the file index (the tree at the default branch's tip) up to date.

    The whole tree is listed on the first run, after history was rewritten, whenever the index is
    empty (a repository whose files were lost is rebuilt by its next run, even with nothing new), and
    after a run that failed half-way (``Repository.files_unsettled``); otherwise only the paths
    changed since the last ingested tip are read, and a tip that did not move changes nothing. Runs of
    other branches leave the index alone.
    """
    scope = IngestionRun.FilesScope
    if not on_default:
        return scope.SKIPPED
    if not tip:
        return scope.UNCHANGED
    if not start or repository.files_unsettled or not File.objects.filter(repository=repository).exists():
        return scope.TREE
    return scope.UNCHANGED if start == tip else scope.CHANGES


# --- Step 3: commits ----------------------------------------------------------------------------------


def _run_lock_if_running(run_id: int) -> IngestionRun | None:
    """The run's row, locked till the chunk's transaction ends, if the run is still running.

    Otherwise None, and what the chunk wrote in this transaction is undone: its run was abandoned (its
    worker went silent) and perhaps followed by another run, which writes the same rows itself.
    """
    locked = IngestionRun.objects.select_for_update().get(pk=run_id)
    if locked.status != Status.RUNNING:
        transaction.set_rollback(True)
        return None
    return locked


def ingestion_commits_chunk(*, run_id: int, skip: int, count: int) -> None:
    """Write one chunk of the run's new commits and their task links; safe to run twice (rows and
    progress count once)."""
    run = IngestionRun.objects.select_related("repository__project").get(pk=run_id)
    if run.status != Status.RUNNING or skip in run.chunks_done:
        return
    started = time.perf_counter()
    git_dir = repository_git_dir(repository=run.repository, fetch=False, needs=run.to_sha)
    commits = commits_read(
        git_dir=git_dir,
        revisions=log_revisions(tip=run.to_sha, exclude=run.from_sha),
        skip=skip,
        max_count=count,
    )
    with transaction.atomic():
        chunk_durability_relax()
        written = commits_write(repository_id=run.repository_id, commits=commits)
        changes = written.changes
        links_started = time.perf_counter()
        links = _commits_link(run=run, commits=commits, written=written)
        links_seconds = time.perf_counter() - links_started
        locked = _run_lock_if_running(run_id)
        if locked is None:
            return
        if skip in locked.chunks_done:
            return  # another delivery of this chunk got here first; its rows were the same
        # Under the run's row lock and after the check above: the chunk's figures are added to the
        # running totals once, even when two deliveries of it both believed they inserted its commits.
        if not _histories_rebuilt(run):
            file_histories_add(run_id=run_id, commit_ids=[written.ids[sha] for sha in sorted(written.added)])
        locked.chunks_done = [*locked.chunks_done, skip]
        locked.task_links_created = F("task_links_created") + links.links_created
        # One line for the unknown keys of the whole run, however many chunks found some.
        notes = _notes_add(*run_notes_merge(locked.notes, links.notes_for_run()))
        locked.notes = _notes_add(notes, [commit.date_note for commit in commits if commit.date_note])
        locked.commits_done = F("commits_done") + len(commits)
        locked.commits_added = F("commits_added") + len(written.added)
        locked.file_changes_added = F("file_changes_added") + changes
        locked.lines_added = F("lines_added") + written.lines_added
        locked.lines_deleted = F("lines_deleted") + written.lines_deleted
        locked.timings = {
            **locked.timings,
            "commits": round(locked.timings.get("commits", 0) + time.perf_counter() - started, 3),
            # Part of "commits": reading the messages for task keys and writing the links.
            "links": round(locked.timings.get("links", 0) + links_seconds, 3),
        }
        locked.heartbeat_at = timezone.now()
        locked.save(
            update_fields=[
                "chunks_done",
                "commits_done",
                "commits_added",
                "file_changes_added",
                "lines_added",
                "lines_deleted",
                "task_links_created",
                "notes",
                "timings",
                "heartbeat_at",
            ]
        )


# --- Step 4: files ------------------------------------------------------------------------------------


# A tree entry whose path left the tree (in a plan of the paths changed since the last run).
_DELETED_MODE = "000000"


def _files_plan(*, run_id: int, git_dir: str, scope: str, start: str, tip: str) -> list[TreeSlice]:
    """The entries the file chunks index, in slices: the whole tree, or the paths changed since ``start``."""
    if scope == IngestionRun.FilesScope.TREE:
        entries: Iterator[tuple[str, str, str, int]] = (
            (entry.path, entry.mode, entry.sha if entry.kind == "blob" else "", entry.size or 0)
            for entry in tree_read(git_dir=git_dir, tree_ish=tip)
        )
    elif scope == IngestionRun.FilesScope.CHANGES:
        entries = (
            (entry.path, entry.mode, entry.sha if entry.kind == "blob" else "", -1)
            for entry in tree_changes_read(git_dir=git_dir, old=start, new=tip)
        )
    else:
        return []
    size = settings.APM_INGEST_CHUNK_FILES
    slices: list[TreeSlice] = [[]]
    with _timed(run_id, "files_plan"):
        for entry in entries:
            if len(slices[-1]) == size:
                slices.append([])
            slices[-1].append(entry)
        total = sum(len(piece) for piece in slices)
        IngestionRun.objects.filter(pk=run_id).update(files_total=total)
    return slices if total else []


def ingestion_files_chunk(*, run_id: int, entries: TreeSlice) -> None:
    """Index one slice of the tree (path, size, language, line count, binary flag); drop deleted paths."""
    run = IngestionRun.objects.select_related("repository").get(pk=run_id)
    if run.status != Status.RUNNING:
        return
    started = time.perf_counter()
    git_dir = repository_git_dir(repository=run.repository, fetch=False, needs=run.to_sha)
    present = [entry for entry in entries if entry[1] != _DELETED_MODE]
    gone = [path for path, mode, _, _ in entries if mode == _DELETED_MODE]
    shas = sorted({sha for _, _, sha, _ in present if sha})
    stats = {blob.sha: blob for blob in blobs_read(git_dir=git_dir, shas=shas)}
    rows = []
    for path, mode, sha, size in present:
        blob = stats.get(sha)
        text_blob = blob is not None and mode != "120000"  # a symlink's blob is its target, not lines
        rows.append(
            {
                "path": path,
                "language": language_of(path, mode=mode),
                "size": size if size >= 0 else (blob.size if blob is not None else 0),
                "lines": blob.lines if blob is not None and text_blob else 0,
                "is_binary": blob.is_binary if blob is not None and text_blob else False,
            }
        )
    with transaction.atomic():
        chunk_durability_relax()
        files_write(
            project_id=run.repository.project_id, repository_id=run.repository_id, run_id=run_id, rows=rows
        )
        files_delete(repository_id=run.repository_id, paths=gone)
        locked = _run_lock_if_running(run_id)
        if locked is None:
            return
        locked.files_indexed = F("files_indexed") + len(rows)
        locked.timings = {
            **locked.timings,
            "files": round(locked.timings.get("files", 0) + time.perf_counter() - started, 3),
        }
        locked.heartbeat_at = timezone.now()
        locked.save(update_fields=["files_indexed", "timings", "heartbeat_at"])


# --- Step 5: finish -----------------------------------------------------------------------------------


def _planned_on_default(run: IngestionRun) -> bool:
    """Whether the run's plan took its branch for the default one (what its finish then follows, even
    if the repository's default branch was changed during the run)."""
    if run.files_scope:
        return run.files_scope != IngestionRun.FilesScope.SKIPPED
    return run.branch == (run.repository.default_branch or run.branch)


def _histories_rebuilt(run: IngestionRun) -> bool:
    """Whether the run's finish rebuilds the per-path totals in one pass (so its chunks add nothing):
    a run that walks the whole branch reads the history anyway, and after a whole tree (a failed run
    before it, a lost index) the totals are not to be trusted."""
    return not run.from_sha or run.files_scope == IngestionRun.FilesScope.TREE


def _is_backfill(run: IngestionRun) -> bool:
    """The first ingestion of a repository's default branch: its history only links, never acts."""
    return _planned_on_default(run) and not run.repository.last_ingested_sha


def _commits_link(*, run: IngestionRun, commits: list[ParsedCommit], written: CommitsWritten) -> LinkReport:
    """Link a chunk's commits to the tasks their messages name.

    What a commit asks waits as ``pending`` only if this run added the commit and is not a backfill.
    A commit that was stored already (history walked again after a force push, a chunk delivered twice)
    only links: it was seen before, so its requests are history, and replaying them years later would
    move tasks nobody asked to move now.
    """
    texts = [CommitText(written.ids[c.sha], c.sha, c.message, c.author_email, c.authored_at) for c in commits]
    new = [text for text in texts if text.sha in written.added]
    seen = [text for text in texts if text.sha not in written.added]
    report = LinkReport()
    mode: Mode
    for mode, batch, added in (
        ("history" if _is_backfill(run) else "pending", new, True),
        ("history", seen, False),
    ):
        if batch:
            report.merge(
                commits_link_tasks(repository=run.repository, mode=mode, commits=batch, new_commits=added)
            )
    return report


# A run's notes are for people: past this many, one line says more were left out.
MAX_RUN_NOTES = 50


def _notes_add(notes: list[str], new: list[str]) -> list[str]:
    if not new or len(notes) > MAX_RUN_NOTES:
        return notes
    room = MAX_RUN_NOTES - len(notes)
    if len(new) <= room:
        return [*notes, *new]
    return [*notes, *new[:room], "Further notes were left out."]


def _requests_apply(*, run: IngestionRun, repository: Repository) -> LinkReport:
    """Carry out the pending requests of the run's commits, when it is a later run of the default branch.

    The chunks wrote the links (``pending`` when actionable); only a run of the default branch after
    the first moves tasks and logs time. A run of another branch leaves its requests pending.
    """
    if not run.to_sha or not _planned_on_default(run):
        return LinkReport()
    pending = CommitTaskLink.objects.filter(
        commit__repository=repository, outcome=CommitTaskLink.Outcome.PENDING
    )
    if _is_backfill(run) and not pending.exists():
        return LinkReport()  # its chunks wrote history, and no run of another branch left a request pending
    git_dir = repository_git_dir(repository=repository, fetch=False, needs=run.to_sha)
    shas = git_run(
        "rev-list", "--end-of-options", *log_revisions(tip=run.to_sha, exclude=run.from_sha), git_dir=git_dir
    ).split()
    if _is_backfill(run):
        # History, also for requests a run of another branch left pending on these commits before the
        # default branch was first ingested: a later force push must not find them pending and replay them.
        commits_requests_to_history(repository=repository, shas=shas)
        return LinkReport()
    return commits_requests_apply(repository=repository, shas=shas)


def ingestion_finish(*, run_id: int) -> IngestionRun:
    """Aggregate file history, carry out the run's commit requests, record the new tip, close the run.

    The run's row stays locked from the status check to the end: a second delivery of this task waits,
    then finds the run finished and does nothing (requests, webhooks and metrics happen once).
    """
    repository_id = IngestionRun.objects.filter(pk=run_id).values_list("repository_id", flat=True).get()
    with transaction.atomic():
        # Lock order, everywhere: the repository's row, then its run's. ingestion_request and a push
        # delivery lock the repository, then take the run's key lock (the delivery's foreign key, checked
        # at their commit); a finish that locked the run first and then updated the repository deadlocked
        # with them (PostgreSQL: "while locking tuple in relation ingestion_runs"). Those requests waited
        # for the run's lock anyway; now they wait for the repository's, at the same place.
        # Each row alone: FOR UPDATE over a join would lock the project too, and with it every task
        # creation of the project, for the whole finish.
        Repository.objects.select_for_update().filter(pk=repository_id).first()
        run = IngestionRun.objects.select_for_update().get(pk=run_id)
        if run.status != Status.RUNNING:
            return run
        run.repository = Repository.objects.select_related("project").get(pk=run.repository_id)
        _run_finish(run)
    run.refresh_from_db()
    INGESTION_RUNS.labels(status=Status.SUCCEEDED).inc()
    INGESTED_COMMITS.inc(run.commits_done)
    if run.started_at and run.finished_at:
        INGESTION_DURATION.observe((run.finished_at - run.started_at).total_seconds())
    return run


# A run that added at least this many rows, and more than the planner believes the tables hold by a
# share (writers.statistics_outdated: a first ingestion, a history that doubled), refreshes the planner's
# statistics itself: until autovacuum gets to it, PostgreSQL would plan the analytics over these tables
# as if they were empty (nested loops over millions of file changes: seconds instead of milliseconds).
ANALYZE_AFTER_ROWS = 1_000


def _run_finish(run: IngestionRun) -> None:
    run_id, repository = run.pk, run.repository
    with _timed(run_id, "finish"):
        if run.to_sha and _histories_rebuilt(run):
            file_histories_rebuild(repository_id=repository.pk, run_id=run_id)
        kept = files_history_refresh(
            repository_id=repository.pk,
            run_id=run_id,
            whole_tree=run.files_scope == IngestionRun.FilesScope.TREE,
        )
        requests_started = time.perf_counter()
        requests = _requests_apply(run=run, repository=repository)
        updates = {"last_ingested_sha": run.to_sha, "last_ingested_at": timezone.now()}
        if run.branch and not repository.default_branch:
            updates["default_branch"] = run.branch
        if _planned_on_default(run):
            updates["files_unsettled"] = False
            if not run.to_sha:  # the branch has no commits (now): what was ingested before stays recorded
                del updates["last_ingested_sha"]
            Repository.objects.filter(pk=repository.pk).update(**updates)
        IngestionRun.objects.filter(pk=run_id).update(
            status=Status.SUCCEEDED,
            finished_at=timezone.now(),
            files_indexed=kept,
            task_requests_applied=requests.applied,
            task_requests_refused=requests.refused,
            notes=_notes_add(run.notes, requests.notes_for_run()),
            timings={**run.timings, "requests": round(time.perf_counter() - requests_started, 3)},
        )
        project_cache_invalidate(project_id=repository.project_id)
        # New commits move the health signals (activity, bus factor, churn, stale tasks): the project's
        # level is recorded again once the run has committed, instead of waiting for the hourly schedule.
        project_id = repository.project_id
        transaction.on_commit(lambda: task_enqueue(HEALTH_RECOMPUTE_TASK, [project_id]), robust=True)
        rows_added = run.file_changes_added + run.commits_added
        if statistics_outdated(rows_added=rows_added, floor=ANALYZE_AFTER_ROWS):
            # After the finish commits: ANALYZE holds its table locks only for itself, not for the
            # whole finish (two big runs finishing at once would wait on each other).
            transaction.on_commit(tables_analyze, robust=True)
        # Outgoing webhooks (webhooks.services): queued with the run's success, sent once it commits.
        webhook_event_emit(
            project_id=repository.project_id,
            event="ingestion.finished",
            data={
                "run": run.pk,
                "repository": {"id": repository.pk, "name": repository.name},
                "branch": run.branch,
                "from_sha": run.from_sha or None,
                "to_sha": run.to_sha,
                "commits_done": run.commits_done,
                "file_changes": run.file_changes_added,
                "duration_seconds": (
                    round((timezone.now() - run.started_at).total_seconds(), 3) if run.started_at else None
                ),
            },
        )
