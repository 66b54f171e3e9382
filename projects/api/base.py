"""Base classes of the API views of everything that belongs to a project.

Every app's views confine themselves to the projects their user is a member of through these classes,
so object-level permission by project membership is written once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from rest_framework import exceptions, mixins, viewsets

from apm.replicas import PRIMARY, replica_reading, replica_reads
from projects.keys import PROJECT_KEY_ANY_CASE
from projects.models import Membership, Project
from projects.selectors import project_ids_visible, project_role

if TYPE_CHECKING:
    # For the type checker the mixins are API views (their ``request`` is DRF's); at run time they are
    # plain mixins, the views they are mixed into bring the rest.
    from rest_framework.views import APIView as _ViewBase
else:
    _ViewBase = object


class ProjectScopedMixin(_ViewBase):
    """Confine a view to the projects its user is a member of (staff: all), and check roles on writes.

    ``project_path`` is the lookup from the view's model to its project ("project", "repository__project",
    "pk" for projects themselves).
    """

    project_path = "project"

    def project_scope(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        visible: Any = project_ids_visible(user=self.request.user)
        if visible is None:
            if self.project_path != "project":
                # Projects themselves: their default manager leaves those being deleted out. Rows of
                # repositories: the deletion marks its repositories, whose lists leave them out.
                return queryset
            # Staff see every project's tasks, members, webhooks..., but not a deleted project's.
            return queryset.filter(project__deleting_since__isnull=True)
        if replica_reading():
            # Who may see what is read from the primary even when the rows come from a replica: a member
            # removed a moment ago must not read on while the replica catches up.
            visible = list(visible.using(PRIMARY).values_list("project_id", flat=True))
        return queryset.filter(**{f"{self.project_path}__in": visible})

    def project_role_require(
        self, project: Project, roles: Iterable[str] = Membership.WRITE_ROLES
    ) -> str | None:
        """The user's role in ``project``; 403 unless it is one of ``roles`` (staff always may: None)."""
        user = self.request.user
        if user.is_staff:
            return None
        role = project_role(project=project, user=user)
        if role is None:
            # Not a member: the project does not exist for this user.
            raise exceptions.NotFound()
        if role not in roles:
            raise exceptions.PermissionDenied(
                f"Your role in {project.key} ({role}) does not allow this; "
                f"it needs one of: {', '.join(sorted(roles))}."
            )
        return role


class ProjectInUrlMixin(ProjectScopedMixin):
    """Views under ``/projects/{key}/<things>/``: the project named in the URL, read once per request.

    A non-member gets 404 (the project does not exist for them). ``project_roles``, when set, are the
    roles every route of the view needs (403 for other members; staff always may).
    """

    project_path = "pk"  # the scope applies to the project in the URL
    project_roles: frozenset[str] | None = None
    kwargs: dict[str, Any]

    def project(self) -> Project:
        if not hasattr(self, "_project"):
            projects = self.project_scope(Project.objects.all())
            project = get_object_or_404(projects, key=self.kwargs["project_key"].upper())
            if self.project_roles is not None:
                self.project_role_require(project, self.project_roles)
            self._project = project
        return self._project


class ReplicaListMixin(ProjectScopedMixin):
    """Lists that may read the replica (apm.replicas): the page is read inside ``list``; the membership
    that scopes it is read from the primary (``project_scope``)."""

    @replica_reads
    def list(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return cast("Any", super()).list(request, *args, **kwargs)


class ProjectScopedViewSet(
    ProjectScopedMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """List, create, read and change (PATCH) the objects of one's projects; nothing is deleted here.

    Projects are archived, tasks cancelled and repositories switched off instead (docs/api.md).
    """

    http_method_names = ["get", "post", "patch", "head", "options"]


class ProjectFiguresViewSet(ProjectScopedMixin, viewsets.GenericViewSet):
    """Read-only figures of one project, at ``/projects/{key}/<figure>/``.

    Members of every role may read them; to others the project does not exist (404). Each action
    validates its query parameters with its own serializer (``query_validate``).
    """

    project_path = "pk"
    lookup_field = "key"
    lookup_value_regex = PROJECT_KEY_ANY_CASE
    filter_backends: list[Any] = []  # query parameters are validated by each action's serializer
    http_method_names = ["get", "head", "options"]

    def get_queryset(self) -> QuerySet[Project]:
        return self.project_scope(Project.objects.all())

    def get_object(self) -> Project:
        # Keys are case-insensitive for people ("apm" finds APM); stored keys are upper case.
        self.kwargs[self.lookup_field] = self.kwargs[self.lookup_field].upper()
        return super().get_object()

    def query_validate(self, serializer_class: type[Any], **context: Any) -> dict[str, Any]:
        """The request's query parameters, checked by ``serializer_class`` (a 400 naming each bad one)."""
        query = serializer_class(data=self.request.query_params, context=context)
        query.is_valid(raise_exception=True)
        return dict(query.validated_data)
