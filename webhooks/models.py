"""Outgoing webhooks: who receives a project's events, and every delivery with how it went."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apm.models import TimeStampedModel
from projects.models import Project


class WebhookEvent(models.TextChoices):
    """What a subscription may listen to. ``ping`` is sent on request only (API ``ping``), never emitted."""

    TASK_CREATED = "task.created", "Task created"
    TASK_STATUS_CHANGED = "task.status_changed", "Task status changed"
    INGESTION_FINISHED = "ingestion.finished", "Ingestion finished"
    INGESTION_FAILED = "ingestion.failed", "Ingestion failed"
    PROJECT_HEALTH_CHANGED = "project.health_changed", "Project health changed"


class WebhookSubscription(TimeStampedModel):
    """A URL outside APM that receives a project's events as signed JSON POSTs.

    The secret is kept in clear because signing needs the secret itself (like Repository.webhook_secret);
    it is shown once, when it is created or rotated.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks", db_index=False)
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text='Event names this URL receives, e.g. ["task.created"].')
    secret = models.CharField(max_length=64, editable=False)
    is_active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        db_table = "webhook_subscriptions"
        ordering = ["project_id", "id"]
        indexes = [
            # webhook_event_emit: a project's active subscriptions (the event is filtered in Python,
            # because a JSON "contains" is not portable); also the API list of a project's webhooks.
            models.Index(fields=["project", "is_active"], name="idx_webhook_subs_project"),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.project_id})"


class WebhookDelivery(models.Model):
    """One event sent (or to be sent) to one subscription: the payload and how each attempt went."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    event = models.CharField(max_length=40)
    # Sent as X-APM-Delivery and as the payload's id: receivers use it to drop a delivery seen twice.
    delivery_id = models.UUIDField(unique=True, editable=False)
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.TextField(blank=True, help_text="The start of the last response body.")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "webhook_deliveries"
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # A subscription's deliveries, newest first: the API's delivery log.
            models.Index(fields=["subscription", "-created_at", "-id"], name="idx_webhook_deliv_sub_time"),
            # The admin's delivery log, newest first.
            models.Index(fields=["-created_at", "-id"], name="idx_webhook_deliv_time"),
            # The admin's delivery log filtered by status ("failed deliveries"), newest first.
            models.Index(fields=["status", "-created_at"], name="idx_webhook_deliv_status"),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.subscription_id} ({self.status})"
