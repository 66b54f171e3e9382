"""Exports of a project's data, written by workers and downloaded through the API or the admin."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from projects.models import Project


class ExportJob(models.Model):
    """An export of a project's data run by a worker: its filters, its state and, once done, its file.

    The filters are stored as given (not a list of ids), so the job reads the rows as they are when it
    runs and the row stays small whatever the export's size.
    """

    class Kind(models.TextChoices):
        TASKS_CSV = "tasks_csv", "Tasks (CSV)"
        COMMITS_CSV = "commits_csv", "Commits (CSV)"
        DIGEST_MD = "digest_md", "Digest (Markdown)"
        DIGEST_HTML = "digest_html", "Digest (HTML)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports", db_index=False)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    filters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    file = models.FileField(upload_to="exports/%Y/%m/", blank=True)
    rows = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "export_jobs"
        ordering = ["-created_at", "-id"]
        indexes = [
            # A project's exports, newest first (API list, admin inline).
            models.Index(fields=["project", "-created_at"], name="idx_export_jobs_project_time"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.project_id} ({self.status})"
