"""Projects and their members through the API."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery, Value
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from apm.users import request_user
from projects.api.base import ProjectInUrlMixin, ProjectScopedViewSet
from projects.api.serializers import (
    MembershipRoleSerializer,
    MembershipSerializer,
    ProjectSerializer,
    ProjectUpdateSerializer,
)
from projects.keys import PROJECT_KEY_ANY_CASE
from projects.models import Membership, Project
from projects.services import membership_remove, membership_set, project_create, project_update


@extend_schema_view(
    list=extend_schema(summary="Projects you are a member of (staff: all)"),
    create=extend_schema(summary="Create a project; you become its owner"),
    retrieve=extend_schema(summary="One project"),
    partial_update=extend_schema(summary="Change a project (owners and maintainers)"),
)
class ProjectViewSet(ProjectScopedViewSet):
    """Projects. Addressed by key (``/api/v1/projects/APM/``); archived with ``status``, never deleted."""

    project_path = "pk"
    lookup_field = "key"
    lookup_value_regex = PROJECT_KEY_ANY_CASE
    filterset_fields = ["status"]
    search_fields = ["key", "name"]
    ordering_fields = ["key", "name", "created_at", "target_date"]
    ordering = ["key"]

    def get_queryset(self) -> QuerySet[Project]:
        # The caller's role rides along as a subquery: one query for the whole page (no N+1).
        user = self.request.user
        role = (
            Subquery(Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1])
            if user.is_authenticated
            else Value(None)
        )
        return self.project_scope(Project.objects.annotate(role=role))

    def get_object(self) -> Project:
        # Keys are case-insensitive for people ("apm" finds APM); stored keys are upper case.
        self.kwargs[self.lookup_field] = self.kwargs[self.lookup_field].upper()
        return super().get_object()

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action in ("update", "partial_update"):
            return ProjectUpdateSerializer
        return ProjectSerializer

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        project = project_create(owner=request_user(self.request), **serializer.validated_data)
        serializer.instance = self.get_queryset().get(pk=project.pk)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        project = serializer.instance
        assert project is not None  # update() hands perform_update the object it read
        self.project_role_require(project, Membership.ADMIN_ROLES)
        project_update(project=project, **serializer.validated_data)


@extend_schema_view(
    list=extend_schema(summary="Members of a project and their roles"),
    create=extend_schema(summary="Add a member, or change their role (owners and maintainers)"),
    retrieve=extend_schema(summary="One member"),
    partial_update=extend_schema(
        summary="Change a member's role (owners and maintainers)", request=MembershipRoleSerializer
    ),
    destroy=extend_schema(summary="Remove a member; a project keeps at least one owner"),
)
class MembershipViewSet(
    ProjectInUrlMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """``/api/v1/projects/{key}/members/{username}/``."""

    serializer_class = MembershipSerializer
    lookup_field = "user__username"
    lookup_url_kwarg = "username"
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filterset_fields = ["role"]
    ordering_fields = ["role", "created_at"]
    ordering = ["user__username"]
    pagination_class = None  # a project has tens of members, not thousands

    def get_queryset(self) -> QuerySet[Membership]:
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        return Membership.objects.filter(project=self.project()).select_related("user")

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action in ("update", "partial_update"):
            return MembershipRoleSerializer
        return MembershipSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.project()
        role = self.project_role_require(project, Membership.ADMIN_ROLES)
        serializer = MembershipSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = membership_set(
            project=project,
            user=serializer.validated_data["user"],
            role=serializer.validated_data.get("role", Membership.Role.MEMBER),
            may_change_owners=self._may_change_owners(role),
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    def _may_change_owners(self, role: str | None) -> bool:
        # ``role``: what project_role_require returned. Maintainers manage members, but only owners make
        # owners or change what an owner is: otherwise a maintainer could promote themselves and demote
        # the owners.
        return self.request.user.is_staff or role == Membership.Role.OWNER

    @extend_schema(responses=MembershipSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        membership = self.get_object()
        project = self.project()
        role = self.project_role_require(project, Membership.ADMIN_ROLES)
        serializer = MembershipRoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = membership_set(
            project=project,
            user=membership.user,
            role=serializer.validated_data["role"],
            may_change_owners=self._may_change_owners(role),
        )
        return Response(MembershipSerializer(membership).data)

    @extend_schema(responses={204: OpenApiResponse(description="Removed.")})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        membership = self.get_object()
        project = self.project()
        # Anyone may leave a project; removing someone else takes an owner or maintainer.
        leaving = membership.user_id == request.user.pk
        may_change_owners = leaving or self._may_change_owners(
            self.project_role_require(project, Membership.ADMIN_ROLES)
        )
        membership_remove(project=project, user=membership.user, may_change_owners=may_change_owners)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(exclude=True)
class ProjectAliasViewSet(ProjectViewSet):
    """``/projects``: the project list and creation, at the short path of the guide's load test."""
