"""Moving webhooks and export jobs out of the projects app: rows, permissions and groups stay as they were."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from reports.models import ExportJob
from tests.factories import ExportJobFactory, WebhookSubscriptionFactory
from webhooks.models import WebhookSubscription

BEFORE = [("projects", "0005_commit_short_references_opt_in"), ("webhooks", None), ("reports", None)]


def migrate(targets: list[tuple[str, str | None]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    ContentType.objects.clear_cache()


def latest() -> list[tuple[str, str | None]]:
    executor = MigrationExecutor(connection)
    return [
        key for key in executor.loader.graph.leaf_nodes() if key[0] in ("projects", "webhooks", "reports")
    ]


@pytest.mark.django_db(transaction=True)
def test_the_move_keeps_rows_permissions_and_groups_both_ways():
    subscription = WebhookSubscriptionFactory()
    job = ExportJobFactory(project=subscription.project)
    operators = Group.objects.create(name="webhook operators")
    change = Permission.objects.get(content_type__app_label="webhooks", codename="change_webhookdelivery")
    export_view = Permission.objects.get(content_type__app_label="reports", codename="view_exportjob")
    operators.permissions.add(change, export_view)

    migrate(BEFORE)  # as the database was before the apps existed
    moved_back = ContentType.objects.get(pk=change.content_type_id)
    assert (moved_back.app_label, moved_back.model) == ("projects", "webhookdelivery")
    assert ContentType.objects.get(pk=export_view.content_type_id).app_label == "projects"

    migrate(latest())
    assert ContentType.objects.get(pk=change.content_type_id).app_label == "webhooks"
    assert ContentType.objects.get(pk=export_view.content_type_id).app_label == "reports"
    assert set(operators.permissions.values_list("pk", flat=True)) == {change.pk, export_view.pk}
    assert not ContentType.objects.filter(app_label="projects", model__in=["webhookdelivery", "exportjob"])
    # State-only: the tables were never touched, so the rows are the same rows.
    assert WebhookSubscription.objects.get().pk == subscription.pk
    assert ExportJob.objects.get().pk == job.pk
