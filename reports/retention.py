"""The retention family: what the schedule deletes once it is older than its setting, and what it keeps.

Each member names its setting (days; 0 keeps its rows forever), the rows that are old, and what is kept
whatever its age. All of them delete through apm.retention.batch_delete. The schedule runs each member
nightly (APM_SCHEDULE_DEFAULTS); ``manage.py retention`` shows and applies them all at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from apm.retention import DEFAULT_BATCH_SIZE, batch_delete
from apm.retention import cutoff as retention_cutoff
from reports.exports import export_files_delete, exports_old
from repos.services import ingestion_runs_old, push_deliveries_old
from tasks.models import TaskEvent
from webhooks.models import WebhookDelivery


def webhook_deliveries_old(*, older_than_days: int) -> QuerySet[WebhookDelivery]:
    """Outgoing deliveries created more than ``older_than_days`` days ago, except those still pending."""
    return WebhookDelivery.objects.filter(created_at__lt=retention_cutoff(older_than_days)).exclude(
        status=WebhookDelivery.Status.PENDING
    )


def task_events_old(*, older_than_days: int) -> QuerySet[TaskEvent]:
    """Task events recorded more than ``older_than_days`` days ago (burndown loses that history)."""
    return TaskEvent.objects.filter(created_at__lt=retention_cutoff(older_than_days))


@dataclass(frozen=True)
class Member:
    name: str
    setting: str
    old: Callable[..., QuerySet[Any]]  # old(older_than_days=...): the rows to delete
    kept: str  # what stays whatever its age, for people
    before_delete: Callable[[QuerySet[Any]], None] | None = None

    def days(self) -> int:
        return int(getattr(settings, self.setting))


FAMILY: tuple[Member, ...] = (
    Member(
        name="ingestion_runs",
        setting="APM_INGESTION_RUNS_KEEP_DAYS",
        old=ingestion_runs_old,
        kept="each repository's latest run; runs queued or running",
    ),
    Member(
        name="push_deliveries",
        setting="APM_PUSH_DELIVERIES_KEEP_DAYS",
        old=push_deliveries_old,
        kept="nothing",
    ),
    Member(
        name="exports",
        setting="APM_EXPORTS_KEEP_DAYS",
        old=exports_old,
        kept="exports queued or running",
        before_delete=export_files_delete,
    ),
    Member(
        name="webhook_deliveries",
        setting="APM_WEBHOOK_DELIVERIES_KEEP_DAYS",
        old=webhook_deliveries_old,
        kept="deliveries still pending",
    ),
    Member(name="task_events", setting="APM_TASK_EVENTS_KEEP_DAYS", old=task_events_old, kept="nothing"),
)
MEMBERS = {member.name: member for member in FAMILY}


def member_old_count(member: Member) -> int:
    """How many rows ``member`` would delete now (0 when its setting keeps them forever)."""
    days = member.days()
    return member.old(older_than_days=days).count() if days else 0


def member_purge(member: Member, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Delete ``member``'s old rows in batches; return how many went (none when its setting is 0)."""
    days = member.days()
    if not days:
        return 0
    return batch_delete(
        member.old(older_than_days=days), batch_size=batch_size, before_delete=member.before_delete
    )
