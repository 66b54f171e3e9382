"""Tasks through the API: create, change, assign, transition, dependencies and history.

Every change goes through ``tasks.services`` with source ``api``, so the API writes the same history,
metrics and cache invalidations as the admin and commit messages.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from apm.users import request_user
from projects.api.base import ProjectScopedViewSet, ReplicaListMixin
from projects.keys import TASK_KEY_RE, TASK_KEY_URL
from tasks.api.filters import TaskFilter
from tasks.api.serializers import (
    TaskBriefSerializer,
    TaskDependencySerializer,
    TaskEventSerializer,
    TaskSerializer,
    TaskTransitionSerializer,
    TaskUpdateSerializer,
)
from tasks.models import Task, TaskEvent
from tasks.selectors import task_history
from tasks.services import (
    task_assign,
    task_create,
    task_dependency_add,
    task_dependency_remove,
    task_transition,
    task_update,
)

SOURCE = TaskEvent.Source.API


@extend_schema_view(
    list=extend_schema(summary="Tasks of your projects"),
    create=extend_schema(summary="Create a task (writing members)"),
    retrieve=extend_schema(summary="One task, by key"),
    partial_update=extend_schema(summary="Change a task's fields or assignee (writing members)"),
)
class TaskViewSet(ReplicaListMixin, ProjectScopedViewSet):
    """Tasks, addressed by key (``/api/v1/tasks/APM-12/``). Closed or cancelled through transitions."""

    # The commits that name a task (``/tasks/{key}/commits/``) are served by repos.api.views.

    lookup_field = "key"
    lookup_value_regex = TASK_KEY_URL
    http_method_names = [*ProjectScopedViewSet.http_method_names, "delete"]  # dependency removal only
    filterset_class = TaskFilter
    search_fields = ["title", "description"]
    ordering_fields = ["number", "priority", "status", "due_date", "created_at", "updated_at"]
    ordering = ["project__key", "number"]

    def get_queryset(self) -> QuerySet[Task]:
        # project, assignee, reporter and parent (with its project, for its key) are joined; the keys of
        # the tasks each one waits on come in one more query for the whole page.
        return self.project_scope(
            Task.objects.select_related(
                "project", "assignee", "reporter", "parent__project"
            ).prefetch_related(
                Prefetch("depends_on", queryset=Task.objects.select_related("project").order_by("number"))
            )
        )

    def get_object(self) -> Task:
        match = TASK_KEY_RE.match(self.kwargs["key"].upper())
        if match is None:
            raise Http404
        task = self.get_queryset().filter(project__key=match["project"], number=int(match["number"])).first()
        if task is None:
            raise Http404
        self.check_object_permissions(self.request, task)
        return task

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action in ("update", "partial_update"):
            return TaskUpdateSerializer
        return TaskSerializer

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        data = dict(serializer.validated_data)
        project = data.pop("project")
        self.project_role_require(project)
        task = task_create(project=project, source=SOURCE, actor=request_user(self.request), **data)
        serializer.instance = self.get_queryset().get(pk=task.pk)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        task = serializer.instance
        assert task is not None  # update() hands perform_update the object it read
        self.project_role_require(task.project)
        data = dict(serializer.validated_data)
        if "assignee" in data:
            task_assign(
                task=task, assignee=data.pop("assignee"), source=SOURCE, actor=request_user(self.request)
            )
        if data:
            task_update(task=task, source=SOURCE, actor=request_user(self.request), **data)
        serializer.instance = self.get_queryset().get(pk=task.pk)

    @extend_schema(
        summary="Move a task to another status",
        request=TaskTransitionSerializer,
        responses={200: TaskSerializer},
    )
    @action(detail=True, methods=["post"])
    def transition(self, request: Request, key: str) -> Response:
        task = self.get_object()
        self.project_role_require(task.project)
        serializer = TaskTransitionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task_transition(task=task, source=SOURCE, actor=request_user(request), **serializer.validated_data)
        return Response(
            TaskSerializer(self.get_queryset().get(pk=task.pk), context=self.get_serializer_context()).data
        )

    @extend_schema(summary="Changes to a task, newest first", responses=TaskEventSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=None, ordering_fields=[], search_fields=[])
    def history(self, request: Request, key: str) -> Response:
        events = task_history(task=self.get_object())
        page = self.paginate_queryset(events)
        return self.get_paginated_response(TaskEventSerializer(page, many=True).data)

    @extend_schema(
        methods=["GET"], summary="Tasks this task waits on", responses=TaskBriefSerializer(many=True)
    )
    @extend_schema(
        methods=["POST"],
        summary="Make this task wait on another (writing members)",
        request=TaskDependencySerializer,
        responses={201: TaskBriefSerializer(many=True)},
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None, filterset_class=None)
    def dependencies(self, request: Request, key: str) -> Response:
        task = self.get_object()
        if request.method == "POST":
            self.project_role_require(task.project)
            serializer = TaskDependencySerializer(data=request.data, context=self.get_serializer_context())
            serializer.is_valid(raise_exception=True)
            task_dependency_add(
                task=task,
                depends_on=serializer.validated_data["depends_on"],
                source=SOURCE,
                actor=request_user(request),
            )
        waits_on = (
            Task.objects.filter(dependent_links__task=task).select_related("project").order_by("number")
        )
        code = status.HTTP_201_CREATED if request.method == "POST" else status.HTTP_200_OK
        return Response(TaskBriefSerializer(waits_on, many=True).data, status=code)

    @extend_schema(
        summary="Stop this task waiting on another (writing members)",
        request=None,
        responses={204: OpenApiResponse(description="Removed, or was not there.")},
    )
    @action(
        detail=True,
        methods=["delete"],
        url_path=f"dependencies/(?P<depends_on>{TASK_KEY_URL})",
        url_name="dependency",
    )
    def dependency_remove(self, request: Request, key: str, depends_on: str) -> Response:
        task = self.get_object()
        self.project_role_require(task.project)
        # The same lookup as adding one: a key the user cannot see is a task that does not exist.
        serializer = TaskDependencySerializer(
            data={"depends_on": depends_on}, context=self.get_serializer_context()
        )
        if not serializer.is_valid():
            raise NotFound(f"Task {depends_on.upper()} does not exist.")
        target = serializer.validated_data["depends_on"]
        task_dependency_remove(task=task, depends_on=target, source=SOURCE, actor=request_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
