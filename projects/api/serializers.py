"""Projects and memberships as the API shows and accepts them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from rest_framework import serializers

from apm.api.serializers import BlankAsNullChoiceField, StrictModelSerializer, StrictSerializer
from projects.models import HealthLevel, Invitation, Membership, Project
from projects.selectors import project_ids_visible
from projects.services import invitation_is_open
from projects.workflow import GRAMMAR_FIELDS


class HealthLevelField(BlankAsNullChoiceField):
    """The last recorded health level, or null before the project's first assessment."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "Last recorded health level; null before the first assessment.")
        super().__init__(choices=HealthLevel.choices, **kwargs)


class ProjectDeletionSerializer(serializers.ModelSerializer[Project]):
    """A project being deleted: gone from every list, its rows deleted in the background."""

    deleting_since = serializers.DateTimeField(read_only=True, help_text="When its deletion was requested.")
    deletion_progress = serializers.JSONField(
        read_only=True,
        help_text="Who asked, when it started, and the rows deleted so far per table (`deleted`).",
    )

    class Meta:
        model = Project
        fields = ["id", "key", "deleting_since", "deletion_progress"]
        read_only_fields = fields


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


class InvitationSerializer(StrictModelSerializer):
    """A pending invitation of a project, as its owners see it. Nothing in it depends on the accounts."""

    username = serializers.CharField(
        max_length=150, help_text="Who is invited. Their account need not exist yet; they accept or decline."
    )
    invited_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    is_expired = serializers.SerializerMethodField(help_text="Past expires_at: it can no longer be accepted.")

    class Meta:
        model = Invitation
        fields = ["username", "role", "invited_by", "expires_at", "is_expired", "created_at", "updated_at"]
        read_only_fields = ["invited_by", "expires_at", "is_expired", "created_at", "updated_at"]

    def get_is_expired(self, invitation: Invitation) -> bool:
        return not invitation_is_open(invitation)


class ReceivedInvitationSerializer(serializers.ModelSerializer):
    """An invitation addressed to you: accept or decline it at ``/api/v1/invitations/{project}/...``."""

    project: serializers.SlugRelatedField[Project] = serializers.SlugRelatedField(
        slug_field="key", read_only=True, help_text="The project's key, also the invitation's address."
    )
    project_name = serializers.CharField(source="project.name", read_only=True)
    invited_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Invitation
        fields = ["project", "project_name", "role", "invited_by", "expires_at", "created_at"]
        read_only_fields = fields
