"""Admin for export jobs: the list, and the download of a finished job's file."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponseBase
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from apm.admin import ReadOnlyAdmin
from projects.admin import LiveProjectRowsMixin
from reports.downloads import export_download
from reports.models import ExportJob


@admin.register(ExportJob)
class ExportJobAdmin(LiveProjectRowsMixin, ReadOnlyAdmin):
    """Exports requested through the API or by the weekly schedule; the file downloads from here."""

    list_display = ["pk", "project", "kind", "status", "rows", "requested_by", "created_at", "file_link"]
    list_filter = ["status", "kind"]
    list_select_related = ["project", "requested_by"]
    search_fields = ["project__key"]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    raw_id_fields = ["project", "requested_by"]

    def get_urls(self) -> list[Any]:
        download = path(
            "<int:pk>/download/",
            self.admin_site.admin_view(self.download_view),
            name="reports_exportjob_download",
        )
        return [download, *super().get_urls()]

    @admin.display(description="File")
    def file_link(self, job: ExportJob) -> str:
        if job.status != ExportJob.Status.SUCCEEDED or not job.file:
            return "-"
        return format_html(
            '<a href="{}">download</a>', reverse("admin:reports_exportjob_download", args=[job.pk])
        )

    def download_view(self, request: HttpRequest, pk: int) -> HttpResponseBase:
        job = get_object_or_404(ExportJob, pk=pk, status=ExportJob.Status.SUCCEEDED)
        if not self.has_view_permission(request, job) or not job.file:
            raise Http404
        return export_download(job)
