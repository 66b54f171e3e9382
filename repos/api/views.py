"""Repositories, ingestion runs, commits, file changes and files through the API."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from apm.api.pagination import HistoryCursorPagination
from apm.api.views import PageAttachMixin
from projects.api.base import ProjectScopedMixin, ProjectScopedViewSet, ReplicaListMixin
from projects.keys import TASK_KEY_RE, TASK_KEY_URL
from projects.models import Membership
from repos.api.filters import CommitFilter, FileChangeFilter, FileFilter, IngestionRunFilter, RepositoryFilter
from repos.api.hooks import push_webhook_url
from repos.api.serializers import (
    CommitSerializer,
    FileChangeSerializer,
    FileSerializer,
    IngestAcceptedSerializer,
    IngestionRunSerializer,
    IngestSerializer,
    RepositoryCreatedSerializer,
    RepositoryDeletionSerializer,
    RepositorySerializer,
    RepositoryUpdateSerializer,
    TaskCommitLinkSerializer,
    WebhookSecretSerializer,
)
from repos.deletion import repository_delete_request
from repos.models import Commit, File, FileChange, IngestionRun, Repository
from repos.selectors import (
    commit_list,
    file_change_list,
    file_list,
    ingestion_run_list,
    last_runs_attach,
    repository_list,
    task_commit_links,
    task_keys_attach,
)
from repos.services import (
    ingestion_request,
    repository_register,
    repository_update,
    repository_webhook_secret_rotate,
)
from tasks.models import Task


@extend_schema_view(
    list=extend_schema(summary="Repositories of your projects"),
    create=extend_schema(
        summary="Register a git repository (owners and maintainers)",
        responses={201: RepositoryCreatedSerializer},
    ),
    retrieve=extend_schema(summary="One repository"),
    partial_update=extend_schema(summary="Rename, change branch, (de)activate (owners and maintainers)"),
    destroy=extend_schema(
        summary="Delete the repository and everything ingested from it (owners and maintainers)",
        responses={
            202: RepositoryDeletionSerializer,
            400: OpenApiResponse(description="An ingestion of it is under way: delete it when it is over."),
            503: OpenApiResponse(description="The task queue is down: nothing was deleted (Retry-After)."),
        },
    ),
)
class RepositoryViewSet(PageAttachMixin, ProjectScopedViewSet):
    """Git repositories of your projects (``/api/v1/repositories/{id}/``).

    Every member of a repository's project reads it; owners and maintainers register, change,
    deactivate and delete it (202: gone from lists at once, its rows deleted in the background) and
    replace its push-webhook secret; any member who may write asks for an ingestion (``.../ingest/``),
    which answers 202 with the run to follow at ``/api/v1/ingestion-runs/{id}/``.
    """

    filterset_class = RepositoryFilter
    search_fields = ["name", "source"]
    ordering_fields = ["name", "created_at", "last_ingested_at"]
    ordering = ["project__key", "name"]

    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Repository]:
        if self.action == "destroy":
            # A repository being deleted already may be asked again: the answer is its progress, and
            # the deletion carries on if it had stopped.
            return self.project_scope(Repository.objects.select_related("project"))
        return self.project_scope(repository_list())

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action in ("update", "partial_update"):
            return RepositoryUpdateSerializer
        return RepositorySerializer

    def page_attach(self, rows: list[Repository]) -> None:
        if self.action != "destroy":  # its answer is the deletion's progress, not the repository
            last_runs_attach(rows)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        project = data.pop("project")
        self.project_role_require(project, Membership.ADMIN_ROLES)
        if not request.user.is_staff and "://" not in data["source"]:
            # A path names a directory on APM's own servers: only operators decide which ones are
            # ingested, and nobody else learns from the answer what exists there.
            raise ValidationError(
                {"source": ["Local paths are registered by operators (staff); give an https:// URL."]}
            )
        repository = repository_register(project=project, existing_ok=False, **data)
        created = self.get_queryset().get(pk=repository.pk)  # the row as lists show it, secret included
        self.page_attach([created])
        body = RepositoryCreatedSerializer(created, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        repository = serializer.instance
        assert repository is not None  # update() hands perform_update the object it read
        self.project_role_require(repository.project, Membership.ADMIN_ROLES)
        repository_update(repository=repository, **serializer.validated_data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Answer 202 at once: the repository is gone from every list, its rows go in the background."""
        repository = self.get_object()
        self.project_role_require(repository.project, Membership.ADMIN_ROLES)
        marked = repository_delete_request(repository=repository, by=request.user)
        # The progress as it stands; with eager Celery (no workers) the deletion is over already.
        current = Repository.objects.filter(pk=marked.pk).first() or marked
        return Response(RepositoryDeletionSerializer(current).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Ingest the repository now (writing members)",
        request=IngestSerializer,
        responses={
            202: IngestAcceptedSerializer,
            503: OpenApiResponse(description="The task queue is down: nothing was queued (Retry-After)."),
        },
    )
    @action(detail=True, methods=["post"])
    def ingest(self, request: Request, pk: str) -> Response:
        repository = self.get_object()
        self.project_role_require(repository.project)
        serializer = IngestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        outcome = ingestion_request(
            repository=repository,
            trigger=IngestionRun.Trigger.API,
            branch=serializer.validated_data.get("branch", ""),
        )
        run = outcome.run
        run.refresh_from_db(fields=["status"])
        location = reverse("api:ingestion-run-detail", kwargs={"pk": run.pk})
        return Response(
            {"run": run.pk, "created": outcome.created, "status": run.status},
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": request.build_absolute_uri(location)},
        )

    @extend_schema(
        summary="Replace the push webhook secret (owners and maintainers)",
        request=None,
        responses={200: WebhookSecretSerializer},
    )
    @action(detail=True, methods=["post"], url_path="webhook-secret")
    def webhook_secret(self, request: Request, pk: str) -> Response:
        repository = self.get_object()
        self.project_role_require(repository.project, Membership.ADMIN_ROLES)
        secret = repository_webhook_secret_rotate(repository=repository)
        return Response({"webhook_secret": secret, "webhook_url": push_webhook_url(request, repository)})


@extend_schema_view(
    list=extend_schema(summary="Ingestion runs of your projects' repositories, newest first"),
    retrieve=extend_schema(summary="One ingestion run: status, progress, timings, error"),
)
class IngestionRunViewSet(ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Ingestion runs of your projects' repositories: what started each one, its status and progress,
    its timings and, for a failed run, the reason. Runs are started by ``.../repositories/{id}/ingest/``,
    a push webhook or the schedule; they are never written through this endpoint."""

    serializer_class = IngestionRunSerializer
    project_path = "repository__project"
    filterset_class = IngestionRunFilter
    ordering_fields = ["created_at", "finished_at"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self) -> QuerySet[IngestionRun]:
        return self.project_scope(ingestion_run_list())


class CommitCursorPagination(HistoryCursorPagination):
    # idx_commits_repo_time / idx_commits_timestamp serve both directions; id breaks ties.
    ordering = ("-timestamp", "-id")


@extend_schema_view(
    list=extend_schema(summary="Commits, newest first (cursor pagination)"),
    retrieve=extend_schema(summary="One commit"),
)
class CommitViewSet(ReplicaListMixin, PageAttachMixin, ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Commits ingested from your projects' repositories, newest first, with the tasks their messages
    name. Lists page by cursor (follow ``next``), so a page costs the same deep into a long history."""

    serializer_class = CommitSerializer
    project_path = "repository__project"
    pagination_class = CommitCursorPagination
    filterset_class = CommitFilter
    ordering_fields = ["timestamp"]

    def get_queryset(self) -> QuerySet[Commit]:
        return self.project_scope(commit_list())

    def page_attach(self, rows: list[Commit]) -> None:
        task_keys_attach(rows)


class FileChangeCursorPagination(HistoryCursorPagination):
    # Newest rows first by primary key: ingestion writes a commit's changes together.
    ordering = ("-id",)


@extend_schema_view(
    list=extend_schema(summary="File changes (cursor pagination)"),
    retrieve=extend_schema(summary="One file change"),
)
class FileChangeViewSet(ReplicaListMixin, viewsets.ReadOnlyModelViewSet):
    """What each ingested commit changed, file by file (lines added and deleted), for your projects'
    repositories. Lists page by cursor (follow ``next``)."""

    serializer_class = FileChangeSerializer
    project_path = "repository__project"
    pagination_class = FileChangeCursorPagination
    filterset_class = FileChangeFilter
    ordering_fields: list[str] = []

    def get_queryset(self) -> QuerySet[FileChange]:
        return self.project_scope(file_change_list())


@extend_schema_view(
    list=extend_schema(summary="Files at the tip of your repositories, most churned first"),
    retrieve=extend_schema(summary="One file"),
)
class FileViewSet(ReplicaListMixin, viewsets.ReadOnlyModelViewSet):
    """The files of your projects' repositories as ingestion last saw them, most churned first."""

    serializer_class = FileSerializer
    filterset_class = FileFilter
    search_fields = ["path"]
    ordering_fields = ["churn", "commit_count", "lines", "size", "path", "last_changed_at"]
    ordering = ["-churn", "id"]

    def get_queryset(self) -> QuerySet[File]:
        return self.project_scope(file_list())


class TaskCommitsViewSet(ProjectScopedMixin, viewsets.GenericViewSet):
    """The commits that name a task, with what each message asked of it."""

    # Served here rather than by the tasks' views: the links are rows of the repositories app.

    lookup_field = "key"
    lookup_value_regex = TASK_KEY_URL
    filter_backends: list[Any] = []
    http_method_names = ["get", "head", "options"]

    def get_queryset(self) -> QuerySet[Task]:
        return self.project_scope(Task.objects.select_related("project"))

    def get_object(self) -> Task:
        match = TASK_KEY_RE.match(self.kwargs["key"].upper())
        task = (
            self.get_queryset().filter(project__key=match["project"], number=int(match["number"])).first()
            if match is not None
            else None
        )
        if task is None:
            raise Http404
        return task

    @extend_schema(
        summary="Commits that name this task, newest first", responses=TaskCommitLinkSerializer(many=True)
    )
    @action(detail=True, methods=["get"])
    def commits(self, request: Request, key: str) -> Response:
        links = task_commit_links(task=self.get_object())
        page = self.paginate_queryset(links)
        return self.get_paginated_response(TaskCommitLinkSerializer(page, many=True).data)
