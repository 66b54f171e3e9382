"""Projects and memberships as the API shows and accepts them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from rest_framework import serializers

from apm.api.serializers import BlankAsNullChoiceField, StrictModelSerializer, StrictSerializer
from projects.models import HealthLevel, Membership, Project
from projects.selectors import project_ids_visible


class HealthLevelField(BlankAsNullChoiceField):
    """The last recorded health level, or null before the project's first assessment."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "Last recorded health level; null before the first assessment.")
        super().__init__(choices=HealthLevel.choices, **kwargs)


class ProjectSerializer(StrictModelSerializer):
    """A project. ``key`` may be given at creation (derived from the name otherwise) and is fixed after."""

    health_level = HealthLevelField()
    role = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="Your role in the project; null for staff who are not members.",
    )

    class Meta:
        model = Project
        fields = [
            "id",
            "key",
            "name",
            "description",
            "status",
            "start_date",
            "target_date",
            "commit_automation",
            "commit_close_keywords",
            "commit_status_tags",
            "commit_short_references",
            "commit_time_logging",
            "health_level",
            "health_score",
            "health_checked_at",
            "role",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "health_level",
            "health_score",
            "health_checked_at",
            "role",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {"key": {"required": False}}


class ProjectUpdateSerializer(ProjectSerializer):
    read_only_hints = {"key": "A project's key cannot change: its tasks are numbered under it."}

    class Meta(ProjectSerializer.Meta):
        read_only_fields = [*ProjectSerializer.Meta.read_only_fields, "key"]


class MembershipSerializer(StrictModelSerializer):
    """A member of a project: a username and a role."""

    user = serializers.SlugRelatedField(
        slug_field="username",
        queryset=get_user_model().objects.filter(is_active=True),
        help_text="The member's username.",
    )

    class Meta:
        model = Membership
        fields = ["user", "role", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class MembershipRoleSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class StatusCountsSerializer(serializers.Serializer):
    backlog = serializers.IntegerField()
    todo = serializers.IntegerField()
    in_progress = serializers.IntegerField()
    in_review = serializers.IntegerField()
    done = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class RecentEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    task = serializers.CharField(help_text="Task key, e.g. APM-12.")
    kind = serializers.CharField()
    source = serializers.CharField()
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    commit_sha = serializers.CharField()
    created_at = serializers.DateTimeField()


class RecentCommitSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    repository = serializers.IntegerField()
    sha = serializers.CharField()
    author_name = serializers.CharField()
    timestamp = serializers.DateTimeField()
    additions = serializers.IntegerField()
    deletions = serializers.IntegerField()


class PortfolioRowSerializer(serializers.Serializer):
    """One project of the dashboard: its task counts and progress."""

    id = serializers.IntegerField()
    key = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()
    health_level = HealthLevelField()
    health_score = serializers.IntegerField(allow_null=True, help_text="Last recorded health score, 0-100.")
    tasks_total = serializers.IntegerField()
    tasks_open = serializers.IntegerField()
    tasks_done = serializers.IntegerField()
    progress = serializers.FloatField(help_text="Done tasks over all tasks but cancelled ones, 0.0 to 1.0.")


class ProjectSummarySerializer(PortfolioRowSerializer):
    """Counts, progress and recent activity of one project."""

    tasks_overdue = serializers.IntegerField(help_text="Open tasks whose due date has passed.")
    tasks_by_status = StatusCountsSerializer()
    repositories = serializers.IntegerField()
    commits = serializers.IntegerField()
    last_commit_at = serializers.DateTimeField(allow_null=True)
    recent_events = RecentEventSerializer(many=True)
    recent_commits = RecentCommitSerializer(many=True)


class ProjectKeyField(serializers.SlugRelatedField):
    """A project named by its key, among the projects the requesting user can see.

    A project the user is not a member of is reported exactly like one that does not exist.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "Project key, e.g. APM.")
        super().__init__(slug_field="key", **kwargs)

    def get_queryset(self) -> QuerySet[Project]:
        request = self.context.get("request")
        projects = Project.objects.all()
        visible = project_ids_visible(user=request.user) if request is not None else None
        return projects if visible is None else projects.filter(pk__in=visible)

    def to_internal_value(self, data: Any) -> Project:
        return super().to_internal_value(data.upper() if isinstance(data, str) else data)
