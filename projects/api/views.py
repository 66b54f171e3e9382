"""Projects and their members through the API."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery, Value
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from apm.users import request_user
from projects.api.base import ProjectInUrlMixin, ProjectScopedViewSet
from projects.api.serializers import (
    InvitationSerializer,
    MembershipRoleSerializer,
    MembershipSerializer,
    ProjectDeletionSerializer,
    ProjectSerializer,
    ProjectUpdateSerializer,
    ReceivedInvitationSerializer,
)
from projects.deletion import project_delete_request
from projects.keys import PROJECT_KEY_ANY_CASE
from projects.models import Invitation, Membership, Project
from projects.selectors import invitation_get_received, invitation_list_pending, invitation_list_received
from projects.services import (
    invitation_accept,
    invitation_create,
    invitation_decline,
    invitation_revoke,
    membership_remove,
    membership_set,
    project_create,
    project_update,
)


@extend_schema_view(
    list=extend_schema(summary="Projects you are a member of (staff: all)"),
    create=extend_schema(summary="Create a project; you become its owner"),
    retrieve=extend_schema(summary="One project"),
    partial_update=extend_schema(summary="Change a project (owners and maintainers)"),
    destroy=extend_schema(
        summary="Delete the project with everything in it (owners)",
        responses={
            202: ProjectDeletionSerializer,
            400: OpenApiResponse(description="An ingestion of one of its repositories is under way."),
            503: OpenApiResponse(description="The task queue is down: nothing was deleted (Retry-After)."),
        },
    ),
)
class ProjectViewSet(ProjectScopedViewSet):
    """Projects. Addressed by key (``/api/v1/projects/APM/``); archived with ``status``.

    Owners may delete one (202): it is gone from every list at once, and its repositories, tasks,
    members, webhooks and exports are deleted in the background (projects.deletion).
    """

    project_path = "pk"
    lookup_field = "key"
    lookup_value_regex = PROJECT_KEY_ANY_CASE
    filterset_fields = ["status"]
    search_fields = ["key", "name"]
    ordering_fields = ["key", "name", "created_at", "target_date"]
    ordering = ["key"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Project]:
        user = self.request.user
        if self.action == "destroy":
            # A project being deleted already may be asked again by its members: the answer is its
            # progress, and the deletion carries on if it had stopped.
            projects = Project.all_objects.all()
            if user.is_staff:
                return projects
            mine = Membership.objects.filter(user=request_user(self.request)).values("project_id")
            return projects.filter(pk__in=mine)
        # The caller's role rides along as a subquery: one query for the whole page (no N+1).
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

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Answer 202 at once: the project is gone from every list, its rows go in the background."""
        project = self.get_object()
        self.project_role_require(project, {Membership.Role.OWNER})
        marked = project_delete_request(project=project, by=request.user)
        # The progress as it stands; with eager Celery (no workers) the deletion is over already.
        current = Project.all_objects.filter(pk=marked.pk).first() or marked
        return Response(ProjectDeletionSerializer(current).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(summary="Members of a project and their roles"),
    create=extend_schema(
        summary="Add a member directly, or change their role (staff; others invite)",
        description="People join a project by accepting an invitation (`.../invitations/`). Only staff "
        "add a member directly; owners and maintainers get 403 here, whoever they name.",
    ),
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
        if not request.user.is_staff:
            # Before the body is read: the refusal is the same whoever is named, so it tells nothing
            # about which accounts exist. People join by accepting an invitation (InvitationViewSet).
            raise exceptions.PermissionDenied(
                f"Members join by invitation: an owner invites them (POST /api/v1/projects/{project.key}/"
                "invitations/) and they accept it. Only staff add members directly."
            )
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


@extend_schema_view(
    list=extend_schema(summary="Pending invitations of a project (owners)"),
    create=extend_schema(
        summary="Invite a username with a role (owners)",
        description="The answer is the same whether an account has that username or not. Inviting the "
        "same username again renews its one invitation (role, expiry) and answers 200.",
        responses={201: InvitationSerializer, 200: InvitationSerializer},
    ),
    destroy=extend_schema(
        summary="Revoke a pending invitation (owners)",
        responses={204: OpenApiResponse(description="Revoked.")},
    ),
)
class InvitationViewSet(
    ProjectInUrlMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """``/api/v1/projects/{key}/invitations/{username}/``: who is invited, managed by the owners."""

    serializer_class = InvitationSerializer
    # Owners only: an invitation offers any role, owner included, to anyone (staff always may).
    project_roles = frozenset({Membership.Role.OWNER})
    lookup_field = "username"
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "delete", "head", "options"]
    filter_backends: list[Any] = []
    pagination_class = None  # a project has a handful of pending invitations

    def get_queryset(self) -> QuerySet[Invitation]:
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        return invitation_list_pending(project=self.project())

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.project()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation, renewed = invitation_create(
            project=project,
            username=serializer.validated_data["username"],
            role=serializer.validated_data.get("role", Membership.Role.MEMBER),
            invited_by=request_user(request),
        )
        code = status.HTTP_200_OK if renewed else status.HTTP_201_CREATED
        return Response(InvitationSerializer(invitation).data, status=code)

    def perform_destroy(self, instance: Invitation) -> None:
        invitation_revoke(invitation=instance)


@extend_schema_view(list=extend_schema(summary="Invitations addressed to you that you may still accept"))
class ReceivedInvitationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """``/api/v1/invitations/``: the invitations to your username; accept or decline each, by project key.

    Only the invitee finds an invitation: anyone else's, like one that does not exist, answers 404.
    """

    serializer_class = ReceivedInvitationSerializer
    lookup_field = "project"
    lookup_value_regex = PROJECT_KEY_ANY_CASE
    filter_backends: list[Any] = []
    pagination_class = None  # a person has a handful of pending invitations

    def get_queryset(self) -> QuerySet[Invitation]:
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        return invitation_list_received(user=request_user(self.request))

    def get_object(self) -> Invitation:
        invitation = invitation_get_received(
            user=request_user(self.request), project_key=self.kwargs["project"]
        )
        if invitation is None:
            raise exceptions.NotFound()
        return invitation

    @extend_schema(
        summary="Accept an invitation: you become a member with its role",
        request=None,
        responses={200: MembershipSerializer},
    )
    @action(detail=True, methods=["post"])
    def accept(self, request: Request, project: str) -> Response:
        membership = invitation_accept(invitation=self.get_object(), user=request_user(request))
        return Response(MembershipSerializer(membership).data)

    @extend_schema(
        summary="Decline an invitation",
        request=None,
        responses={204: OpenApiResponse(description="Declined.")},
    )
    @action(detail=True, methods=["post"])
    def decline(self, request: Request, project: str) -> Response:
        invitation_decline(invitation=self.get_object(), user=request_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(exclude=True)
class ProjectAliasViewSet(ProjectViewSet):
    """``/projects``: the project list and creation, at the short path of the guide's load test."""
