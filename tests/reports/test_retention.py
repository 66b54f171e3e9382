"""The retention family: each member deletes only what is old, in batches, and keeps what must stay."""

from __future__ import annotations

import datetime
import uuid
from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.utils import timezone

from apm.retention import KEEP_DAYS_MAX, batch_delete, cutoff
from reports.models import ExportJob
from reports.retention import FAMILY, MEMBERS, member_purge
from reports.tasks import exports_purge_task, retention_purge_task
from repos.models import IngestionRun, PushDelivery, Repository
from repos.tasks import ingestion_runs_purge_task, push_deliveries_purge_task
from tasks.models import TaskEvent
from tests.factories import (
    ExportJobFactory,
    IngestionRunFactory,
    RepositoryFactory,
    TaskFactory,
    WebhookDeliveryFactory,
    WebhookSubscriptionFactory,
)
from tests.processes import manage
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

DAYS = 10
Delivery = WebhookDelivery.Status


def _age(queryset, days: int, field: str = "created_at") -> None:  # type: ignore[no-untyped-def]
    queryset.update(**{field: timezone.now() - datetime.timedelta(days=days)})


@pytest.fixture
def keep_ten_days(settings):  # type: ignore[no-untyped-def]
    for member in FAMILY:
        setattr(settings, member.setting, DAYS)
    return settings


def _runs(repository: Repository) -> dict[str, IngestionRun]:
    runs = {
        "old": IngestionRunFactory(repository=repository),
        "old_running": IngestionRunFactory(repository=repository, status=IngestionRun.Status.RUNNING),
        "latest_old": IngestionRunFactory(repository=repository),
    }
    for name, run in runs.items():  # created in this order: latest_old is the repository's latest
        _age(IngestionRun.objects.filter(pk=run.pk), DAYS + 3 - list(runs).index(name))
    runs["recent_elsewhere"] = IngestionRunFactory()
    return runs


def _push_deliveries(repository: Repository, ages: list[int]) -> list[int]:
    ids = []
    for number, age in enumerate(ages):
        delivery = PushDelivery.objects.create(
            repository=repository, delivery_id=f"d-{number}", body_sha256=f"{number:064x}"
        )
        _age(PushDelivery.objects.filter(pk=delivery.pk), age, "received_at")
        ids.append(delivery.pk)
    return ids


def _export(status: str, age: int) -> ExportJob:
    job = ExportJobFactory(status=status)
    if status == ExportJob.Status.SUCCEEDED:
        job.file.save(f"retention-{uuid.uuid4().hex}.csv", ContentFile(b"id\n"), save=True)
    _age(ExportJob.objects.filter(pk=job.pk), age)
    return job


def _webhook_deliveries(statuses_and_ages: list[tuple[str, int]]) -> list[int]:
    subscription = WebhookSubscriptionFactory()
    ids = []
    for status, age in statuses_and_ages:
        delivery = WebhookDeliveryFactory(subscription=subscription, status=status)
        _age(WebhookDelivery.objects.filter(pk=delivery.pk), age)
        ids.append(delivery.pk)
    return ids


def _task_events(ages: list[int]) -> list[int]:
    task = TaskFactory()
    TaskEvent.objects.filter(task=task).delete()  # the creation's event, recorded now
    ids = []
    for age in ages:
        event = TaskEvent.objects.create(
            task=task, project=task.project, kind=TaskEvent.Kind.STATUS_CHANGED, source=TaskEvent.Source.API
        )
        _age(TaskEvent.objects.filter(pk=event.pk), age)
        ids.append(event.pk)
    return ids


def test_each_member_deletes_only_what_is_old_and_keeps_what_must_be_kept(keep_ten_days):
    repository = RepositoryFactory()
    runs = _runs(repository)
    pushes = _push_deliveries(repository, [DAYS + 1, DAYS + 2, DAYS - 1])
    exports = {
        "old": _export(ExportJob.Status.SUCCEEDED, DAYS + 1),
        "old_queued": _export(ExportJob.Status.QUEUED, DAYS + 1),
        "recent": _export(ExportJob.Status.SUCCEEDED, DAYS - 1),
    }
    old_file = exports["old"].file.name
    hooks = _webhook_deliveries(
        [
            (Delivery.SUCCEEDED, DAYS + 1),
            (Delivery.FAILED, DAYS + 1),
            (Delivery.PENDING, DAYS + 1),
            (Delivery.SUCCEEDED, DAYS - 1),
        ]
    )
    events = _task_events([DAYS + 1, DAYS - 1])

    deleted = retention_purge_task.apply().get()

    assert deleted == {
        "ingestion_runs": 1,
        "push_deliveries": 2,
        "exports": 1,
        "webhook_deliveries": 2,
        "task_events": 1,
    }
    kept_runs = {runs[name].pk for name in ("old_running", "latest_old", "recent_elsewhere")}
    assert set(IngestionRun.objects.values_list("pk", flat=True)) == kept_runs
    assert list(PushDelivery.objects.values_list("pk", flat=True)) == [pushes[2]]
    assert set(ExportJob.objects.values_list("pk", flat=True)) == {
        exports["old_queued"].pk,
        exports["recent"].pk,
    }
    assert not default_storage.exists(old_file)
    assert default_storage.exists(exports["recent"].file.name)
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {hooks[2], hooks[3]}
    assert list(TaskEvent.objects.values_list("pk", flat=True)) == [events[1]]


def test_task_events_are_kept_forever_by_default_and_zero_keeps_any_member(settings):
    assert settings.APM_TASK_EVENTS_KEEP_DAYS == 0
    events = _task_events([3650, 1])
    settings.APM_WEBHOOK_DELIVERIES_KEEP_DAYS = 0
    hooks = _webhook_deliveries([(Delivery.SUCCEEDED, 3650)])

    assert member_purge(MEMBERS["task_events"]) == 0
    assert member_purge(MEMBERS["webhook_deliveries"]) == 0

    assert sorted(TaskEvent.objects.values_list("pk", flat=True)) == sorted(events)
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == hooks


def test_the_earlier_scheduled_purges_keep_everything_when_their_setting_is_zero(settings):
    for member in FAMILY:
        setattr(settings, member.setting, 0)
    repository = RepositoryFactory()
    _runs(repository)
    _push_deliveries(repository, [3650])
    _export(ExportJob.Status.SUCCEEDED, 3650)

    purged = [
        ingestion_runs_purge_task.apply().get(),
        push_deliveries_purge_task.apply().get(),
        exports_purge_task.apply().get(),
    ]

    assert purged == [0, 0, 0]
    counts = (IngestionRun.objects.count(), PushDelivery.objects.count(), ExportJob.objects.count())
    assert counts == (4, 1, 1)


def test_a_batch_size_of_two_deletes_five_rows_in_three_batches(django_assert_max_num_queries):
    hooks = _webhook_deliveries([(Delivery.SUCCEEDED, 40)] * 5 + [(Delivery.SUCCEEDED, 1)])
    batches: list[int] = []
    old = WebhookDelivery.objects.filter(created_at__lt=timezone.now() - datetime.timedelta(days=30))

    # Per batch: its savepoint, the ids, the count above, the delete, the release; then one empty batch
    # (savepoint, ids, release) ends it. The bound grows with the batches, never with the rows.
    with django_assert_max_num_queries(5 * 3 + 3):
        deleted = batch_delete(old, batch_size=2, before_delete=lambda batch: batches.append(batch.count()))

    assert deleted == 5
    assert batches == [2, 2, 1]
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [hooks[5]]


def test_running_it_twice_equals_running_it_once(keep_ten_days):
    repository = RepositoryFactory()
    _runs(repository)
    _push_deliveries(repository, [DAYS + 1, DAYS - 1])
    _webhook_deliveries([(Delivery.FAILED, DAYS + 1)])
    _task_events([DAYS + 1])

    first = retention_purge_task.apply().get()
    left = {member.name: member.old(older_than_days=DAYS).count() for member in FAMILY}
    second = retention_purge_task.apply().get()

    assert sum(first.values()) == 4  # a run, a push, a webhook delivery, a task event
    assert set(left.values()) == {0}
    assert second == dict.fromkeys(MEMBERS, 0)


def test_the_commands_dry_run_counts_and_deletes_nothing_then_the_command_deletes(keep_ten_days):
    _webhook_deliveries([(Delivery.SUCCEEDED, DAYS + 1)] * 3 + [(Delivery.PENDING, DAYS + 1)])
    _task_events([DAYS + 1, DAYS - 1])
    out = StringIO()

    call_command("retention", "--dry-run", stdout=out)

    assert "webhook_deliveries: 3 older than 10 days (dry run, nothing deleted)" in out.getvalue()
    assert "task_events: 1 older than 10 days (dry run, nothing deleted)" in out.getvalue()
    assert (WebhookDelivery.objects.count(), TaskEvent.objects.count()) == (4, 2)

    out = StringIO()
    call_command("retention", "--batch-size", "2", stdout=out)

    assert "webhook_deliveries: 3 older than 10 days, 3 deleted" in out.getvalue()
    assert (WebhookDelivery.objects.count(), TaskEvent.objects.count()) == (1, 1)


def test_the_command_says_when_a_member_is_kept_forever_and_refuses_bad_input(settings):
    out = StringIO()
    call_command("retention", "--dry-run", "--only", "task_events", stdout=out)
    assert out.getvalue().strip() == "task_events: kept forever (APM_TASK_EVENTS_KEEP_DAYS=0)"
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("retention", "--batch-size", "0")
    with pytest.raises(CommandError):
        call_command("retention", "--only", "everything")


def test_the_schedule_covers_every_member(settings):
    own_tasks = {
        "repos.purge_ingestion_runs": "ingestion_runs",
        "repos.purge_push_deliveries": "push_deliveries",
        "projects.exports_purge": "exports",
    }
    covered = set()
    for task, _when, kwargs in settings.APM_SCHEDULE_DEFAULTS.values():
        if task == retention_purge_task.name:
            covered.add(kwargs["member"])
        elif task in own_tasks:
            covered.add(own_tasks[task])

    assert covered == set(MEMBERS)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("APM_TASK_EVENTS_KEEP_DAYS", "-1"),
        ("APM_WEBHOOK_DELIVERIES_KEEP_DAYS", "30d"),
        ("APM_EXPORT_KEEP_DAYS", "1.5"),
        # Past a century: the date arithmetic overflowed at the first purge ("int too large").
        ("APM_TASK_EVENTS_KEEP_DAYS", "99999999"),
        ("APM_INGESTION_RUNS_KEEP_DAYS", str(KEEP_DAYS_MAX + 1)),
        ("APM_PUSH_DELIVERIES_KEEP_DAYS", "9" * 5000),  # more digits than int() reads
    ],
)
def test_a_bad_retention_setting_refuses_to_start(variable: str, value: str):
    result = manage("check", **{variable: value})

    assert result.returncode != 0
    assert f"{variable} is a whole number of days from 0 to {KEEP_DAYS_MAX}, not {value!r}" in result.stderr
    assert "Traceback" not in result.stderr.split("ImproperlyConfigured")[-1]


def test_a_century_is_the_longest_retention_and_runs():
    show = "from django.conf import settings as s; print(s.APM_TASK_EVENTS_KEEP_DAYS)"
    shown = manage("shell", "-v", "0", "-c", show, APM_TASK_EVENTS_KEEP_DAYS=str(KEEP_DAYS_MAX))
    assert shown.stdout.split() == [str(KEEP_DAYS_MAX)]


@pytest.mark.parametrize("days", [KEEP_DAYS_MAX, KEEP_DAYS_MAX + 1, 99_999_999, 10**12])
def test_a_cutoff_past_a_century_stops_at_a_century(days: int):
    earliest = timezone.now() - datetime.timedelta(days=KEEP_DAYS_MAX)

    assert abs(cutoff(days) - earliest) < datetime.timedelta(minutes=1)


def test_a_huge_count_of_days_purges_nothing_and_twice_is_once(settings):
    task = TaskFactory()
    event = TaskEvent.objects.create(
        task=task, project=task.project, kind=TaskEvent.Kind.STATUS_CHANGED, source=TaskEvent.Source.API
    )
    run = IngestionRunFactory()
    IngestionRunFactory(repository=run.repository)  # the latest run, kept whatever its age
    for queryset in (TaskEvent.objects.filter(pk=event.pk), IngestionRun.objects.filter(pk=run.pk)):
        _age(queryset, 50 * 365)  # old, but not a century old
    settings.APM_TASK_EVENTS_KEEP_DAYS = 10**12  # a settings override skips the start-up check
    out = StringIO()

    call_command("retention", "--only", "task_events", stdout=out)
    call_command("retention", "--only", "task_events", stdout=out)
    call_command("purge_ingestion_runs", "--older-than", str(10**12), stdout=out)

    assert out.getvalue().count("task_events: 0 older than") == 2
    assert "0 ingestion run(s)" in out.getvalue()
    assert TaskEvent.objects.filter(pk=event.pk).exists()
    assert IngestionRun.objects.filter(pk=run.pk).exists()


def test_the_earlier_export_setting_still_works_and_the_new_name_wins():
    show = "from django.conf import settings as s; print(s.APM_EXPORTS_KEEP_DAYS, s.APM_EXPORT_KEEP_DAYS)"

    assert manage("shell", "-v", "0", "-c", show, APM_EXPORT_KEEP_DAYS="3").stdout.split() == ["3", "3"]
    both = manage("shell", "-v", "0", "-c", show, APM_EXPORT_KEEP_DAYS="3", APM_EXPORTS_KEEP_DAYS="5")
    assert both.stdout.split() == ["5", "5"]
