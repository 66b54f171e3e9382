"""Tasks, their dependencies, their history and the time spent on them."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from apm.dates import day_validate
from apm.models import TimeStampedModel
from projects.workflow import TaskStatus


class Task(TimeStampedModel):
    """A unit of work in a project, known to people and commit messages as ``KEY-N`` (``APM-42``)."""

    # The statuses are the project's vocabulary too: its commit grammar names them (projects.workflow).
    Status = TaskStatus

    class Priority(models.IntegerChoices):
        LOW = 1, "Low"
        MEDIUM = 2, "Medium"
        HIGH = 3, "High"
        CRITICAL = 4, "Critical"

    # A task in one of these is finished: it no longer blocks the tasks that depend on it.
    CLOSED_STATUSES = frozenset({Status.DONE, Status.CANCELLED})

    project = models.ForeignKey(
        "projects.Project",
        on_delete=models.CASCADE,
        related_name="tasks",
        db_index=False,  # the guide's idx_tasks_project_id below replaces Django's automatic index
    )
    number = models.PositiveIntegerField(editable=False)
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.TODO)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.MEDIUM)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_tasks",
    )
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reported_tasks",
    )
    # Validators, not constraints: a plan needs a day APM can count to (apm.dates) and an effort that is
    # not negative; rows written before they existed stay readable.
    due_date = models.DateField(null=True, blank=True, validators=[day_validate])
    estimate_hours = models.DecimalField(
        max_digits=7,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Estimated effort in hours.",
    )
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="subtasks"
    )
    depends_on = models.ManyToManyField(
        "self",
        through="TaskDependency",
        through_fields=("task", "depends_on"),
        symmetrical=False,
        related_name="blocks",
        blank=True,
    )
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    closed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "tasks"
        ordering = ["project_id", "number"]
        constraints = [
            # The task key KEY-N is unique; also the lookup path for "APM-42" in commit messages.
            models.UniqueConstraint(fields=["project", "number"], name="task_project_number_unique"),
        ]
        indexes = [
            # All tasks of a project (the guide's index; joins and project deletion use it).
            models.Index(fields=["project"], name="idx_tasks_project_id"),
            # Board columns and progress: tasks of a project counted or listed by status.
            models.Index(fields=["project", "status"], name="idx_tasks_project_status"),
            # "My open tasks": a user's tasks by status.
            models.Index(fields=["assignee", "status"], name="idx_tasks_assignee_status"),
            # Overdue and upcoming work of a project, ordered by due date.
            models.Index(fields=["project", "due_date"], name="idx_tasks_project_due"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.title}"

    @property
    def key(self) -> str:
        return f"{self.project.key}-{self.number}"

    @property
    def is_closed(self) -> bool:
        return self.status in self.CLOSED_STATUSES


class TaskDependency(models.Model):
    """``task`` waits on ``depends_on``: it cannot be done while ``depends_on`` is open."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="dependency_links")
    depends_on = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="dependent_links")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "task_dependencies"
        constraints = [
            # Also serves the cycle check, which walks from a task to what it depends on.
            models.UniqueConstraint(fields=["task", "depends_on"], name="task_dependency_unique"),
            models.CheckConstraint(
                condition=~models.Q(task=models.F("depends_on")),
                name="task_dependency_not_self",
                violation_error_message="A task cannot depend on itself.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} depends on {self.depends_on_id}"


class TaskEvent(models.Model):
    """One change to a task, with who or what made it: history, audit trail and burndown source."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        STATUS_CHANGED = "status_changed", "Status changed"
        ASSIGNED = "assigned", "Assigned"
        DEPENDENCY_ADDED = "dependency_added", "Dependency added"
        DEPENDENCY_REMOVED = "dependency_removed", "Dependency removed"
        TIME_LOGGED = "time_logged", "Time logged"

    class Source(models.TextChoices):
        ADMIN = "admin", "Admin"
        API = "api", "API"
        COMMIT = "commit", "Commit"
        BATCH = "batch", "Batch job"
        SYSTEM = "system", "System"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events", db_index=False)
    # Denormalised from the task so burndown and activity queries read one table per project.
    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="task_events", db_index=False
    )
    kind = models.CharField(max_length=30, choices=Kind.choices)
    source = models.CharField(max_length=20, choices=Source.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    commit_sha = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)

    class Meta:
        db_table = "task_events"
        ordering = ["-created_at", "-id"]
        indexes = [
            # A task's history, newest first.
            models.Index(fields=["task", "-created_at"], name="idx_task_events_task_created"),
            # Burndown, burnup and activity feeds of a project over a date range.
            models.Index(fields=["project", "created_at"], name="idx_task_events_project_time"),
            # Tasks closed lately in every project: the portfolio's weekly sparklines
            # (insights.selectors.portfolio_closed_per_day), recomputed after any task change anywhere.
            # The kind and the status first, so only status changes to done are read, the window's;
            # the project last, so the count is answered from the index alone. Claimed by
            # explain_hot_queries ("tasks closed in 12 weeks, every project").
            models.Index(
                fields=["kind", "to_status", "created_at", "project"], name="idx_task_events_kind_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on task {self.task_id} via {self.source}"


class TimeEntry(models.Model):
    """Time spent on a task, logged by a person (admin, API) or by a commit message (``@2h30m``)."""

    class Source(models.TextChoices):
        ADMIN = "admin", "Admin"
        API = "api", "API"
        COMMIT = "commit", "Commit"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="time_entries")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    author_email = models.EmailField(blank=True)
    minutes = models.PositiveIntegerField()
    spent_on = models.DateField()
    source = models.CharField(max_length=20, choices=Source.choices)
    # The commit sha for entries read from commit messages; empty otherwise.
    source_ref = models.CharField(max_length=64, blank=True)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "time_entries"
        verbose_name_plural = "time entries"
        ordering = ["-spent_on", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(minutes__gt=0), name="time_entry_minutes_positive"),
        ]
        indexes = [
            # Time logged on a project's tasks over a period (reports): task first, then the day.
            models.Index(fields=["task", "spent_on"], name="idx_time_entries_task_day"),
            # Finding the entry a commit already logged, so re-ingestion never logs it twice.
            models.Index(fields=["source", "source_ref"], name="idx_time_entries_source_ref"),
        ]

    def __str__(self) -> str:
        return f"{self.minutes} min on task {self.task_id}"
