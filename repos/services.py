"""Repositories: registration, ingestion requests and the batch jobs over all of them.

The admin, the API, the commands and the webhooks call these. A request records an ``IngestionRun`` and
queues the Celery task ``repos.ingest`` (repos.tasks), which carries the run through the steps of
repos.ingestion.pipeline; N requests while a run is active are that one run.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from apm.errors import validation_text
from apm.jobs import BrokerUnavailable, queue_waiting, task_enqueue_on_commit
from apm.retention import DEFAULT_BATCH_SIZE, batch_delete
from apm.retention import cutoff as retention_cutoff
from projects.models import Project
from projects.services import project_cache_invalidate
from repos.git import (
    GitError,
    RepositorySource,
    git_run,
    remote_host_check,
    source_identity,
    source_parse,
)
from repos.ingestion.pipeline import ACTIVE_STATUSES, run_fail
from repos.models import IngestionRun, PushDelivery, Repository

logger = structlog.get_logger(__name__)
Status = IngestionRun.Status
# The Celery task that plans a run and fans its chunks out (repos.tasks).
INGEST_TASK = "repos.ingest"


# --- Registration -------------------------------------------------------------------------------------


def repository_register(
    *,
    project: Project,
    source: str,
    name: str = "",
    default_branch: str = "",
    is_active: bool = True,
    existing_ok: bool = True,
) -> Repository:
    """Register ``source`` for ``project`` (or return it if it is registered already).

    An inactive repository is registered but left out of scheduled ingestion and push webhooks.

    The source is checked first (``repos.git.source_parse``): an unsafe or unusable one is refused with
    a ``ValidationError`` on ``source`` and nothing is written. With ``existing_ok=False`` a source the
    project already has (however it is spelled) is refused too, instead of being returned.
    """
    parsed = source_parse(source)
    if parsed.kind == Repository.Kind.REMOTE:
        remote_host_check(parsed.location)
    stored_source = source.strip() if parsed.kind == Repository.Kind.REMOTE else str(Path(source.strip()))
    if default_branch:
        _branch_validate(default_branch, field="default_branch")
    existing = Repository.objects.filter(project=project, source=stored_source).first()
    existing = existing or _registered_as(project=project, parsed=parsed)
    if existing is not None and existing.deleting_since is not None:
        # Its rows are being deleted in the background (repos.deletion); the source is free after that.
        raise ValidationError(
            {"source": [f"{project.key}'s repository with this source is being deleted; try again later."]}
        )
    if existing is not None:
        if not existing_ok:
            raise ValidationError(
                {"source": [f"{project.key} already has this source, as repository {existing.name!r}."]}
            )
        return existing
    repository = Repository(
        project=project,
        name=name or _name_from_source(stored_source),
        kind=parsed.kind,
        source=stored_source,
        default_branch=default_branch,
        is_active=is_active,
        webhook_secret=_webhook_secret_new(),
    )
    repository.full_clean()
    try:
        with transaction.atomic():
            repository.save(force_insert=True)
    except IntegrityError:
        if not existing_ok:
            raise ValidationError({"source": [f"{project.key} already has this source."]}) from None
        return Repository.objects.get(project=project, source=stored_source)
    project_cache_invalidate(project_id=project.pk)
    return repository


# Fields repository_update may change. The source is the repository's identity: register a new one.
REPOSITORY_UPDATABLE_FIELDS = frozenset({"name", "default_branch", "is_active"})


@transaction.atomic
def repository_update(*, repository: Repository, **fields: object) -> Repository:
    """Rename a repository, change the branch it follows, or (de)activate its scheduled ingestion."""
    unknown = set(fields) - REPOSITORY_UPDATABLE_FIELDS
    if unknown:
        raise ValidationError({name: ["This field cannot be changed."] for name in sorted(unknown)})
    if fields.get("default_branch"):
        _branch_validate(str(fields["default_branch"]), field="default_branch")
    for name, value in fields.items():
        setattr(repository, name, value)
    repository.full_clean()
    repository.save(update_fields=[*fields, "updated_at"])
    project_cache_invalidate(project_id=repository.project_id)
    return repository


def _webhook_secret_new() -> str:
    return secrets.token_hex(32)


def repository_webhook_secret_rotate(*, repository: Repository) -> str:
    """Give ``repository`` a new webhook secret and return it; signatures made with the old one fail."""
    secret = _webhook_secret_new()
    Repository.objects.filter(pk=repository.pk).update(webhook_secret=secret, updated_at=timezone.now())
    repository.webhook_secret = secret
    return secret


def _registered_as(*, project: Project, parsed: RepositorySource) -> Repository | None:
    """The repository of ``project`` that is this source spelled another way, if there is one."""
    identity = source_identity(parsed)
    for candidate in Repository.objects.filter(project=project, kind=parsed.kind):
        try:
            if source_identity(source_parse(candidate.source)) == identity:
                return candidate
        except ValidationError:
            continue  # a source that no longer checks out (moved, now refused) is no match
    return None


def _name_from_source(source: str) -> str:
    path = urlsplit(source).path if "://" in source else source
    path = path.rstrip("/").removesuffix("/.git")  # /srv/shop/.git is shop
    name = PurePosixPath(path).name
    return (name[:-4] if name.endswith(".git") else name) or "repository"


def _branch_validate(branch: str, *, field: str = "branch") -> None:
    if branch.startswith("-"):
        raise ValidationError({field: [f"{branch!r} is not a valid branch name."]})
    try:
        git_run("check-ref-format", "--branch", branch, timeout=10)
    except GitError as exc:
        raise ValidationError({field: [f"{branch!r} is not a valid branch name."]}) from exc


# --- Runs and the one-at-a-time lock ------------------------------------------------------------------


@dataclass(frozen=True)
class IngestionRequest:
    run: IngestionRun
    created: bool  # False: a run of this repository was already queued or running, and is returned


def ingestion_request(*, repository: Repository, trigger: str, branch: str = "") -> IngestionRequest:
    """Queue an ingestion of ``repository`` unless one is already under way.

    One ingestion per repository at a time: the repository row is locked while the active runs are
    looked up, so two requests at once cannot both start one. A run whose worker went silent for
    longer than ``APM_INGEST_STALE_SECONDS`` is marked failed and no longer blocks new runs.
    """
    if branch or repository.default_branch:
        # The stored default branch too: one written around the services (a database edit, a restore)
        # is refused here with its reason instead of failing inside git.
        _branch_validate(branch or repository.default_branch)
    with transaction.atomic():
        locked = Repository.objects.select_for_update().filter(pk=repository.pk).first()
        if locked is None or locked.deleting_since is not None:
            # Read under the lock a deletion request takes too: no run starts behind a deletion.
            raise ValidationError({"repository": ["This repository is being deleted."]})
        for active in IngestionRun.objects.filter(repository=repository, status__in=ACTIVE_STATUSES):
            if run_is_stale(active):
                run_fail(active, "abandoned: its worker stopped reporting progress")
                continue
            return IngestionRequest(run=active, created=False)
        run = IngestionRun.objects.create(
            repository=repository,
            trigger=trigger,
            branch=branch or repository.default_branch,
            heartbeat_at=timezone.now(),
        )
        # With eager Celery the whole run happens at the commit, and its failure is recorded on the run.
        # A broker that does not take the message leaves no run behind: a queued run nothing will
        # start would make every later request join it.
        task_enqueue_on_commit(INGEST_TASK, run.pk, discard=lambda: _queued_run_discard(run.pk))
    return IngestionRequest(run=run, created=True)


def _queued_run_discard(run_id: int) -> None:
    IngestionRun.objects.filter(pk=run_id, status=Status.QUEUED).delete()


# The Celery task that carries a silent run on (repos.tasks), and the note each resumption leaves.
RESUME_TASK = "repos.ingest_resume"
RESUMED_NOTE = "Resumed"


def ingestion_runs_resume() -> list[int]:
    """Queue again the work of the running runs whose workers went silent; return their ids.

    A worker killed outright (the machine lost, the whole worker SIGKILLed) takes the chunk messages it
    held with it: the broker hands them out again only after its visibility timeout (an hour), and
    meanwhile the run stays ``running`` and every request joins it. Every task of a run beats while it
    works (``APM_INGEST_HEARTBEAT_SECONDS``), so a run silent for ``APM_INGEST_RESUME_SECONDS`` while
    no message waits in the queue has lost its messages: its plan is queued again, which queues the
    chunks not written yet and the finish (repos.tasks). Chunks are upserts counted once, so a chunk
    that was in fact alive, or the lost message delivered late, changes nothing.

    An ingestion queue with messages waiting may hold the run's chunks behind other runs' work:
    nothing is resumed then.
    A run resumed ``APM_INGEST_RESUMES_MAX`` times (a chunk that kills its worker each time) fails.
    Run by the schedule every minute; safe to run twice at once (the run's row is taken with SKIP
    LOCKED, and a resumption does its work only if the run was not heard from since it was queued).
    """
    now = timezone.now()
    silent_since = now - datetime.timedelta(seconds=settings.APM_INGEST_RESUME_SECONDS)
    stalled = list(
        IngestionRun.objects.filter(status=Status.RUNNING, heartbeat_at__lt=silent_since)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not stalled or queue_waiting(settings.CELERY_INGESTION_QUEUE) > 0:
        return []
    resumed = []
    for run_id in stalled:
        with transaction.atomic():
            # Locked by a live transaction (a finish under way holds the run's row): not silent.
            run = (
                IngestionRun.objects.select_for_update(skip_locked=True)
                .filter(pk=run_id, status=Status.RUNNING, heartbeat_at__lt=silent_since)
                .first()
            )
            if run is None:
                continue
            resumptions = sum(1 for note in run.notes if note.startswith(RESUMED_NOTE))
            if resumptions < settings.APM_INGEST_RESUMES_MAX:
                run.heartbeat_at = now
                run.notes = [
                    *run.notes,
                    f"{RESUMED_NOTE} at {now:%Y-%m-%d %H:%M:%S} UTC: its workers had stopped reporting "
                    "progress; what was not written yet was queued again.",
                ]
                run.save(update_fields=["heartbeat_at", "notes"])
                # Broker down: the next pass tries again (the heartbeat recorded here counts as silence).
                task_enqueue_on_commit(RESUME_TASK, run.pk, now.isoformat(), discard=lambda: None)
                resumed.append(run.pk)
                logger.warning("ingestion_resumed", run_id=run.pk, resumptions=resumptions + 1)
                continue
        run_fail(
            run,
            f"abandoned: its workers stopped reporting progress {resumptions + 1} times "
            "(a commit or file that makes the worker die?)",
        )
    return resumed


def run_is_stale(run: IngestionRun) -> bool:
    limit = datetime.timedelta(seconds=settings.APM_INGEST_STALE_SECONDS)
    last_sign = run.heartbeat_at or run.created_at
    return last_sign is not None and timezone.now() - last_sign > limit


# --- Batch jobs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestAllEntry:
    """One repository of ``repositories_ingest_all``: its run, or why none could be requested."""

    repository: Repository
    request: IngestionRequest | None
    refusal: str = ""


def repositories_ingest_all(*, trigger: str = IngestionRun.Trigger.SCHEDULE) -> Iterator[IngestAllEntry]:
    """Request an incremental ingestion of every active repository; one already under way is left alone.

    Yields each repository as its request is made (with eager Celery, once its run is over). A
    repository refused before any run is recorded (a branch that is no longer valid) is yielded with
    the reason, and the others go on. Safe to run twice at once (the schedule and an operator): each
    repository's row lock lets one run in. The list is read first: with eager Celery each request runs
    a whole ingestion, and no cursor should stay open meanwhile.
    """
    repositories = list(
        Repository.objects.filter(is_active=True, deleting_since__isnull=True)
        .select_related("project")
        .order_by("pk")
    )
    broker_down: BrokerUnavailable | None = None
    for repository in repositories:
        if broker_down is not None:
            # One refusal of the broker is enough: the others would each wait for theirs. The next
            # scheduled pass requests them again.
            yield IngestAllEntry(repository=repository, request=None, refusal=str(broker_down))
            continue
        try:
            request = ingestion_request(repository=repository, trigger=trigger)
        except ValidationError as exc:
            yield IngestAllEntry(repository=repository, request=None, refusal=validation_text(exc))
            continue
        except BrokerUnavailable as exc:
            logger.warning("ingest_all_broker_unavailable", repository_id=repository.pk, reason=str(exc))
            broker_down = exc
            yield IngestAllEntry(repository=repository, request=None, refusal=str(exc))
            continue
        yield IngestAllEntry(repository=repository, request=request)


def ingestion_runs_purge(*, older_than_days: int, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Delete finished runs created more than ``older_than_days`` days ago; return how many went.

    The latest run of each repository is kept whatever its age: the admin and the API show it as the
    repository's state. Deleted in batches of ids, so no statement locks the table for long, and two
    purges at once only delete what is there.
    """
    if older_than_days < 0:
        raise ValidationError({"older_than": ["Give a number of days, 0 or more."]})
    return batch_delete(ingestion_runs_old(older_than_days=older_than_days), batch_size=batch_size)


def ingestion_runs_old(*, older_than_days: int) -> QuerySet[IngestionRun]:
    """Finished runs created more than ``older_than_days`` days ago, except each repository's latest."""
    latest = (
        IngestionRun.objects.filter(repository_id=OuterRef("repository_id"))
        .order_by("-created_at", "-id")
        .values("id")[:1]
    )
    return IngestionRun.objects.filter(
        created_at__lt=retention_cutoff(older_than_days), status__in=[Status.SUCCEEDED, Status.FAILED]
    ).exclude(pk=Subquery(latest))


# --- Push webhook deliveries --------------------------------------------------------------------------


@dataclass(frozen=True)
class PushDeliveryOutcome:
    """A verified push delivery: the run it requested, or, sent before, the first delivery and its run."""

    delivery: PushDelivery
    replayed: bool  # True: received before; nothing was started, ``delivery`` is the first one
    created: bool  # a new run was created (False: one under way was joined, or none was requested)


def push_delivery_receive(
    *, repository: Repository, delivery_id: str, body_sha256: str, ingest: bool
) -> PushDeliveryOutcome:
    """Record a verified push delivery and, the first time only, request an ingestion when ``ingest``.

    A delivery is the same when its id or its body is: a signed body sent again under a new id (the id is
    a header outside the signature) starts nothing either. Two copies at once are decided by the unique
    constraints: the second insert waits for the first's transaction, fails, and returns the first. The
    record and the run are written together, and a failure after the commit (a broker that refused the
    run's message) removes the record too, so the sender's retry counts as a first delivery.
    """
    delivery: PushDelivery | None = None
    request: IngestionRequest | None = None
    try:
        with transaction.atomic():
            delivery = PushDelivery.objects.create(
                repository=repository, delivery_id=delivery_id, body_sha256=body_sha256
            )
            if ingest:
                request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.WEBHOOK)
                delivery.run = request.run
                delivery.save(update_fields=["run"])
    except IntegrityError:
        first = None if delivery is not None else _push_delivery_first(repository, delivery_id, body_sha256)
        if first is None:
            raise
        return PushDeliveryOutcome(delivery=first, replayed=True, created=False)
    except BaseException:
        if delivery is not None:
            PushDelivery.objects.filter(pk=delivery.pk).delete()
        raise
    return PushDeliveryOutcome(
        delivery=delivery, replayed=False, created=request is not None and request.created
    )


def _push_delivery_first(repository: Repository, delivery_id: str, body_sha256: str) -> PushDelivery | None:
    # push_delivery_id_unique and push_delivery_body_unique serve the two halves.
    same = Q(delivery_id=delivery_id) | Q(body_sha256=body_sha256)
    return PushDelivery.objects.filter(same, repository=repository).order_by("received_at", "pk").first()


def push_deliveries_purge(*, older_than_days: int, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Delete push deliveries received more than ``older_than_days`` days ago; return how many went.

    A delivery older than that, sent again, is taken as new: it requests one incremental ingestion,
    which finds nothing new unless the branch moved since. Deleted in batches, like ingestion runs.
    """
    if older_than_days < 0:
        raise ValidationError({"older_than": ["Give a number of days, 0 or more."]})
    return batch_delete(push_deliveries_old(older_than_days=older_than_days), batch_size=batch_size)


def push_deliveries_old(*, older_than_days: int) -> QuerySet[PushDelivery]:
    """Push deliveries received more than ``older_than_days`` days ago, oldest first."""
    # idx_push_deliveries_received finds the oldest first.
    old = PushDelivery.objects.filter(received_at__lt=retention_cutoff(older_than_days))
    return old.order_by("received_at")
