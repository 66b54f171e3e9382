"""Projects and who may work on them."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from apm.models import TimeStampedModel

PROJECT_KEY_VALIDATOR = RegexValidator(
    regex=r"^[A-Z][A-Z0-9]{1,9}$",
    message="A project key is 2 to 10 capital letters or digits, starting with a letter (e.g. APM).",
)


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
