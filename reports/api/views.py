"""A project's exports through the API: ``/api/v1/projects/{key}/exports/``.

Members who may write request an export (POST: kind and filters, answered 202 with the job); every
member follows the job and downloads its file once it has succeeded. This view checks membership:
export files have no public URL. Local files are streamed by it; from object storage it redirects to
a URL of the object signed for a minute (reports.downloads).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apm.api.serializers import StrictModelSerializer
from apm.api.throttling import ScopedThrottle, UserThrottle
from apm.users import request_user
from projects.api.base import ProjectInUrlMixin
from projects.models import Membership
from reports.downloads import export_download
from reports.exports import export_request
from reports.models import ExportJob


class ExportJobSerializer(StrictModelSerializer):
    """An export of the project's data, run by a worker."""

    filters = serializers.JSONField(
        required=False,
        default=dict,
        help_text=(
            "tasks_csv: status (list), since, until (dates; tasks updated in the period). commits_csv: "
            "repository (id), author (email or name), since, until. digest_md/digest_html: since (default "
            "7 days ago), until."
        ),
    )
    requested_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    download = serializers.SerializerMethodField(help_text="Where to get the file once the job succeeded.")

    class Meta:
        model = ExportJob
        fields = [
            "id",
            "kind",
            "filters",
            "status",
            "rows",
            "error",
            "requested_by",
            "download",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "rows",
            "error",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_download(self, job: ExportJob) -> str | None:
        if job.status != ExportJob.Status.SUCCEEDED:
            return None
        return f"/api/v1/projects/{job.project.key}/exports/{job.pk}/download/"


@extend_schema_view(
    list=extend_schema(summary="Exports of a project, newest first"),
    retrieve=extend_schema(summary="One export and its state"),
    create=extend_schema(
        summary="Request an export (members who may write); a worker writes the file",
        responses={
            202: ExportJobSerializer,
            503: OpenApiResponse(description="The task queue is down: nothing was queued (Retry-After)."),
        },
    ),
)
class ExportJobViewSet(
    ProjectInUrlMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[ExportJob],
):
    """Exports of a project (``/api/v1/projects/{key}/exports/``): CSV of its tasks or commits, or its
    digest in Markdown or HTML. A request answers 202 at once and a worker writes the file; follow the
    job until it has succeeded, then fetch ``download``, which answers the file or a redirect to it (a
    link that expires in a minute). Members read and download; members who may write request."""

    serializer_class = ExportJobSerializer
    lookup_value_regex = "[0-9]+"
    filter_backends: list[Any] = []
    throttle_scope = "exports"

    def get_throttles(self) -> list[Any]:
        # Each export is a worker's pass over the project's history: requests have a budget of their own.
        if self.action == "create":
            return [UserThrottle(), ScopedThrottle()]
        return [UserThrottle()]

    def get_queryset(self) -> QuerySet[ExportJob]:
        if getattr(self, "swagger_fake_view", False):
            return ExportJob.objects.none()
        # idx_export_jobs_project_time
        return (
            ExportJob.objects.filter(project=self.project())
            .select_related("project", "requested_by")
            .order_by("-created_at", "-id")
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.project()
        self.project_role_require(project, Membership.WRITE_ROLES)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = export_request(
            project=project,
            kind=serializer.validated_data["kind"],
            filters=serializer.validated_data.get("filters") or {},
            requested_by=request_user(request),
        )
        job.refresh_from_db()  # eager Celery has run it already; a worker will later
        job.project = project
        headers = {"Location": f"/api/v1/projects/{project.key}/exports/{job.pk}/"}
        return Response(self.get_serializer(job).data, status=status.HTTP_202_ACCEPTED, headers=headers)

    @extend_schema(
        summary="Download the export's file",
        responses={
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, "text/markdown"): OpenApiTypes.BINARY,
            (200, "text/html"): OpenApiTypes.BINARY,
            302: OpenApiResponse(
                description="With object storage: the file's signed URL (Location), valid for a minute."
            ),
            404: OpenApiResponse(description="No such export, or its file is not ready."),
        },
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, project_key: str, pk: str) -> HttpResponseBase:
        job = self.get_object()
        if job.status != ExportJob.Status.SUCCEEDED or not job.file:
            raise exceptions.NotFound(f"Export {job.pk} has no file: it is {job.status}.")
        return export_download(job)
