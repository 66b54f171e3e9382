"""Projects and who may work on them."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from apm.models import TimeStampedModel
from projects.keys import PROJECT_KEY
from projects.workflow import DEFAULT_CLOSE_KEYWORDS, keywords_problems, status_tags_problems

PROJECT_KEY_VALIDATOR = RegexValidator(
    regex=rf"^{PROJECT_KEY}$",
    message="A project key is 2 to 10 capital letters or digits, starting with a letter (e.g. APM).",
)


class HealthLevel(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    AT_RISK = "at_risk", "At risk"
    CRITICAL = "critical", "Critical"


class LiveProjectManager(models.Manager["Project"]):
    """Projects not being deleted: the default manager, so every list, page, API answer, lookup by key
    and form choice leaves a project out from the moment its deletion is requested (projects.deletion).

    Related-object access (``task.project``) goes through the base manager and still finds it, so the
    rows that wait for the background deletion stay whole.
    """

    def get_queryset(self) -> models.QuerySet[Project]:
        return super().get_queryset().filter(deleting_since__isnull=True)


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

    # The last health assessment (insights.services.project_health_record); a change of level is an
    # event for outgoing webhooks.
    health_level = models.CharField(max_length=10, choices=HealthLevel.choices, blank=True, editable=False)
    health_score = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    health_checked_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Set when its deletion is requested (projects.deletion): from then on the default manager hides it
    # and its repositories are marked for deletion too, while a background task deletes its rows in
    # batches and finally the row itself. Rows deleted so far, per table, are kept in deletion_progress.
    deleting_since = models.DateTimeField(null=True, blank=True, editable=False)
    deletion_progress = models.JSONField(default=dict, blank=True, editable=False)

    # The first manager is the default one (the admin, DRF, forms and related managers use it).
    objects = LiveProjectManager()
    # Every project, those being deleted too: the deletion itself, key uniqueness, the sweep.
    all_objects = models.Manager()

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
        errors: dict[str, list[str]] = {}
        if problems := keywords_problems(self.commit_close_keywords or ""):
            errors["commit_close_keywords"] = problems
        if problems := status_tags_problems(self.commit_status_tags):
            errors["commit_status_tags"] = problems
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


class Invitation(TimeStampedModel):
    """An owner's offer of a role in a project to a username; the membership exists once they accept.

    Stored by username, not by user: inviting answers the same whether such an account exists or not,
    so an invitation tells the inviter nothing about the accounts of the installation. Whoever holds
    the username sees the invitation and decides; nobody is made a member without their consent.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined"
        REVOKED = "revoked", "Revoked"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    username = models.CharField(max_length=150, help_text="Who is invited; they may not have an account yet.")
    role = models.CharField(max_length=20, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Pending invitations past this moment can no longer be accepted (APM_INVITATION_EXPIRY_DAYS).
    expires_at = models.DateTimeField()
    responded_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was accepted, declined or revoked."
    )

    class Meta:
        db_table = "project_invitations"
        ordering = ["project_id", "username"]
        constraints = [
            # One invitation per username and project, whatever its state: inviting again renews that row,
            # so N identical invitations, concurrent ones included, are one pending invitation. Also serves
            # the project's list of invitations (its leading column).
            models.UniqueConstraint(fields=["project", "username"], name="invitation_project_user_unique"),
        ]
        indexes = [
            # "My pending invitations" (GET /api/v1/invitations/): by username and status.
            models.Index(fields=["username", "status"], name="idx_invitations_username"),
        ]

    def __str__(self) -> str:
        return f"{self.username} to {self.project.key} as {self.role} ({self.status})"
