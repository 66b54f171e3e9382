"""Projects and memberships as the API shows and accepts them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from rest_framework import serializers

from apm.api.serializers import BlankAsNullChoiceField, StrictModelSerializer, StrictSerializer
from projects.models import HealthLevel, Membership, Project
from projects.selectors import project_ids_visible
from projects.workflow import GRAMMAR_FIELDS


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
            *GRAMMAR_FIELDS,
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
