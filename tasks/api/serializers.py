"""Tasks, their dependencies and their history as the API shows and accepts them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apm.api.serializers import StrictModelSerializer, StrictSerializer
from projects.api.serializers import ProjectKeyField
from projects.keys import TASK_KEY_ANY_CASE, TASK_KEY_RE
from projects.selectors import project_ids_visible
from tasks.models import Task, TaskEvent
from tasks.services import task_assignee_resolve

MAX_DEPENDENCIES_PER_REQUEST = 50
TRANSITION_HINT = "Status changes through POST /api/v1/tasks/{key}/transition/."


@extend_schema_field({"type": "string", "pattern": f"^{TASK_KEY_ANY_CASE}$", "example": "APM-12"})
class TaskKeyField(serializers.RelatedField):
    """A task named by its key (``APM-12``), among the tasks the requesting user can see."""

    default_error_messages = {
        "invalid": "{value!r} is not a task key such as APM-12.",
        "does_not_exist": "Task {value} does not exist.",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "Task key, e.g. APM-12.")
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet[Task]:
        request = self.context.get("request")
        tasks = Task.objects.select_related("project")
        visible = project_ids_visible(user=request.user) if request is not None else None
        return tasks if visible is None else tasks.filter(project__in=visible)

    def to_internal_value(self, data: Any) -> Task:
        match = TASK_KEY_RE.match(str(data).strip().upper())
        if match is None:
            self.fail("invalid", value=str(data)[:50])
        task = self.get_queryset().filter(project__key=match["project"], number=int(match["number"])).first()
        if task is None:
            self.fail("does_not_exist", value=match.group(0))
        return task

    # A task, never the PKOnlyObject the stubs allow for: that is PrimaryKeyRelatedField's optimisation.
    def to_representation(self, value: Task) -> str:  # type: ignore[override]
        return value.key


@extend_schema_field({"type": "string", "nullable": True, "example": "ada"})
class AssigneeField(serializers.CharField):
    """A username, looked up only among the task's project's members with write access (``validate``).

    Never among all accounts: an unknown username and an account outside the project get the same
    answer, so the field tells nobody which accounts exist.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=150, allow_null=True, **kwargs)

    def to_representation(self, value: User) -> str:  # type: ignore[override]
        return value.get_username()


class TaskSerializer(StrictModelSerializer):
    """A task. On creation ``status`` is the initial status; afterwards it changes through transitions."""

    key = serializers.CharField(read_only=True, help_text="e.g. APM-12")
    project = ProjectKeyField()
    assignee = AssigneeField(required=False, help_text="Username of a member with write access.")
    reporter: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    # A field named like Field.parent (the stubs' attribute); DRF keeps declared fields off the class.
    parent = TaskKeyField(required=False, allow_null=True)  # type: ignore[assignment]
    depends_on = TaskKeyField(many=True, required=False, help_text="Keys of the tasks this one waits on.")

    class Meta:
        model = Task
        fields = [
            "id",
            "key",
            "project",
            "number",
            "title",
            "description",
            "status",
            "priority",
            "assignee",
            "reporter",
            "due_date",
            "estimate_hours",
            "parent",
            "depends_on",
            "started_at",
            "closed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "number", "reporter", "started_at", "closed_at", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if attrs.get("assignee") is not None:
            # The username becomes a user here, among the project's writing members only.
            project = attrs["project"] if self.instance is None else self.instance.project
            attrs["assignee"] = task_assignee_resolve(project=project, username=attrs["assignee"])
        return attrs

    def validate_depends_on(self, value: list[Task]) -> list[Task]:
        if len(value) > MAX_DEPENDENCIES_PER_REQUEST:
            raise serializers.ValidationError(
                f"At most {MAX_DEPENDENCIES_PER_REQUEST} dependencies at once; add more afterwards."
            )
        return value


class TaskUpdateSerializer(TaskSerializer):
    """What a task update may change; status, project and dependencies have their own routes."""

    read_only_hints = {
        "status": TRANSITION_HINT,
        "project": "A task stays in its project.",
        "depends_on": "Dependencies change through /api/v1/tasks/{key}/dependencies/.",
    }

    class Meta(TaskSerializer.Meta):
        read_only_fields = [*TaskSerializer.Meta.read_only_fields, "status", "project", "depends_on"]


class TaskBriefSerializer(serializers.ModelSerializer):
    key = serializers.CharField(read_only=True)

    class Meta:
        model = Task
        fields = ["id", "key", "title", "status"]
        read_only_fields = fields


class TaskTransitionSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=Task.Status.choices)
    note = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class TaskDependencySerializer(StrictSerializer):
    depends_on = TaskKeyField()


class TaskEventSerializer(serializers.ModelSerializer):
    actor: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = TaskEvent
        fields = [
            "id",
            "kind",
            "source",
            "actor",
            "from_status",
            "to_status",
            "commit_sha",
            "data",
            "created_at",
        ]
        read_only_fields = fields
