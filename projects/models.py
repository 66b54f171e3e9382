"""Projects and who may work on them."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from apm.models import TimeStampedModel

PROJECT_KEY_VALIDATOR = RegexValidator(
    regex=r"^[A-Z][A-Z0-9]{1,9}$",
    message="A project key is 2 to 10 capital letters or digits, starting with a letter (e.g. APM).",
)


DEFAULT_CLOSE_KEYWORDS = "close closes closed fix fixes fixed resolve resolves resolved"


class HealthLevel(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    AT_RISK = "at_risk", "At risk"
    CRITICAL = "critical", "Critical"


class Project(TimeStampedModel):
    """A software project: its tasks are numbered ``KEY-N`` and its repositories feed its status."""

    class Status(models.TextChoices):
        PLANNING = "planning", "Planning"
        ACTIVE = "active", "Active"
        ON_HOLD = "on_hold", "On hold"
        COMPLETED = "completed", "Completed"
        ARCHIVED = "archived", "Archived"

    key = models.CharField(max_length=10, unique=True, validators=[PROJECT_KEY_VALIDATOR])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    start_date = models.DateField(null=True, blank=True)
    target_date = models.DateField(null=True, blank=True)
    # Highest task number handed out so far. Task creation increments it under the project's row lock,
    # so concurrent creations get consecutive numbers without gaps or duplicates.
    last_task_number = models.PositiveIntegerField(default=0, editable=False)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects", blank=True
    )

    # How commit messages of the project's repositories move its tasks (see docs/automation.md).
    commit_automation = models.BooleanField(
        default=True,
        help_text="Let commits on the default branch transition tasks and log time. Links are always kept.",
    )
    commit_close_keywords = models.CharField(
        max_length=300,
        default=DEFAULT_CLOSE_KEYWORDS,
        help_text="Words that close the task named after them ('fixes APM-12'), separated by spaces.",
    )
    commit_status_tags = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            'Extra transition tags, tag to status ({"review": "in_review"}). Every status name is a tag '
            "already ('APM-12 #in_review')."
        ),
    )
    # Off unless asked for: on a GitHub-hosted history "#12" is a pull request or an issue there, and
    # reading it as task 12 links the wrong tasks (migration 0005 turned it off for projects that kept
    # the old default; docs/automation.md).
    commit_short_references = models.BooleanField(
        default=False,
        help_text="Read '#12' in this project's repositories as this project's task 12. Leave off when the "
        "repositories' '#12' are pull requests or issues of their host (GitHub, GitLab, Gitea).",
    )
    commit_time_logging = models.BooleanField(
        default=True, help_text="Log time written as 'APM-12 @2h30m' on the task."
    )

    # The last health assessment (projects.analytics.project_health_record); a change of level is an
    # event for outgoing webhooks.
    health_level = models.CharField(max_length=10, choices=HealthLevel.choices, blank=True, editable=False)
    health_score = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    health_checked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "projects"
        ordering = ["key"]
        indexes = [
            # Portfolio filters by status ("active projects") in the dashboard, the API and the admin.
            models.Index(fields=["status"], name="idx_projects_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(target_date__isnull=True)
                | models.Q(start_date__isnull=True)
                | models.Q(target_date__gte=models.F("start_date")),
                name="projects_target_after_start",
                violation_error_message="The target date cannot be before the start date.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} · {self.name}"

    def clean(self) -> None:
        """Check the commit grammar settings, each problem under its field."""
        from repos.grammar import keywords_problems  # the grammar module is plain text processing
        from tasks.models import Task

        errors: dict[str, list[str]] = {}
        if problems := keywords_problems(self.commit_close_keywords or ""):
            errors["commit_close_keywords"] = problems
        tags = self.commit_status_tags
        if not isinstance(tags, dict):
            errors["commit_status_tags"] = ['Give an object of tag to status, e.g. {"review": "in_review"}.']
        else:
            bad = [
                f"#{tag} -> {status!r}: tags are letters, digits, _ or -, "
                f"and {status!r} must be a task status."
                for tag, status in tags.items()
                if not isinstance(status, str)
                or status not in Task.Status.values
                or not re.fullmatch(r"#?[A-Za-z][\w-]{0,39}", str(tag))
            ]
            if bad:
                errors["commit_status_tags"] = bad
        if errors:
            raise ValidationError(errors)


class Membership(TimeStampedModel):
    """A user's role in a project; the role decides what the user may see and change."""

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MAINTAINER = "maintainer", "Maintainer"
        MEMBER = "member", "Member"
        VIEWER = "viewer", "Viewer"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)

    # Roles that may change a project's tasks and repositories.
    WRITE_ROLES = frozenset({Role.OWNER, Role.MAINTAINER, Role.MEMBER})
    # Roles that may change the project itself and its members.
    ADMIN_ROLES = frozenset({Role.OWNER, Role.MAINTAINER})

    class Meta:
        db_table = "project_memberships"
        ordering = ["project_id", "user_id"]
        constraints = [
            # One role per user and project; also serves "is this user a member of project X".
            models.UniqueConstraint(fields=["user", "project"], name="membership_user_project_unique"),
        ]
        indexes = [
            # Member lists of a project, by role (owners first in the admin and the API).
            models.Index(fields=["project", "role"], name="idx_memberships_project_role"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project.key} as {self.role}"


class ExportJob(models.Model):
    """An export of a project's data run by a worker: its filters, its state and, once done, its file.

    The filters are stored as given (not a list of ids), so the job reads the rows as they are when it
    runs and the row stays small whatever the export's size.
    """

    class Kind(models.TextChoices):
        TASKS_CSV = "tasks_csv", "Tasks (CSV)"
        COMMITS_CSV = "commits_csv", "Commits (CSV)"
        DIGEST_MD = "digest_md", "Digest (Markdown)"
        DIGEST_HTML = "digest_html", "Digest (HTML)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports", db_index=False)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    filters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    file = models.FileField(upload_to="exports/%Y/%m/", blank=True)
    rows = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "export_jobs"
        ordering = ["-created_at", "-id"]
        indexes = [
            # A project's exports, newest first (API list, admin inline).
            models.Index(fields=["project", "-created_at"], name="idx_export_jobs_project_time"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.project_id} ({self.status})"


# --- Outgoing webhooks (projects/webhooks.py) -------------------------------------------------------


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
