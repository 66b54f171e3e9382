"""Admin for repositories and ingestion output, built for tables of millions of rows.

Commit and file-change lists skip the full COUNT(*) (``show_full_result_count = False``), join what
they show in the same query, order by indexed columns and leave heavy text out of the list query.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.db.models.functions import Left
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apm.admin import (
    EstimatedCountPaginator,
    ReadOnlyAdmin,
    ReadOnlyInline,
    admin_table,
    instance_adopt,
    validation_message,
)
from repos.analytics import AnalyticsWindow, change_coupling, code_window, contributor_stats, file_hotspots
from repos.git import remote_host_check, source_parse
from repos.models import Commit, CommitTaskLink, File, FileChange, IngestionRun, Repository
from repos.services import ingestion_request, repository_register

# Rows of each analytics panel (hotspots, coupling, contributors) on a repository's page.
HOTSPOTS_PANEL_ROWS = 10


class IngestionRunInline(ReadOnlyInline):
    model = IngestionRun
    fields = ["created_at", "status", "trigger", "commits_done", "commits_total", "error"]
    readonly_fields = fields
    ordering = ["-created_at"]
    max_num = 0


class RepositoryAdminForm(forms.ModelForm):
    class Meta:
        model = Repository
        fields = ["project", "name", "source", "default_branch", "is_active"]

    def clean_source(self) -> str:
        source = self.cleaned_data["source"]
        if self.instance.pk is None:
            try:
                parsed = source_parse(source)
                if parsed.kind == Repository.Kind.REMOTE:
                    remote_host_check(parsed.location)
            except ValidationError as exc:
                raise ValidationError(exc.message_dict["source"]) from exc
        return source


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    form = RepositoryAdminForm
    list_display = ["name", "project", "kind", "source", "default_branch", "last_ingested_at", "is_active"]
    list_select_related = ["project"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name", "source", "project__key"]
    autocomplete_fields = ["project"]
    readonly_fields = ["kind", "last_ingested_sha", "last_ingested_at", "created_at", "updated_at"]
    inlines = [IngestionRunInline]
    actions = ["ingest_now"]

    def get_readonly_fields(self, request: HttpRequest, obj: Repository | None = None) -> list[str]:
        # The source is checked once, at registration; changing it would mix two histories.
        if obj is None:
            return list(self.readonly_fields)
        return [*self.readonly_fields, "project", "source", *self.analytics_panels]

    # Read-only tables of the code analytics (repos.analytics) of the 90 days up to today, or up to the
    # repository's last commit when it has been quiet since; the window is read once a page view (the
    # last commit, one query) and each panel is one selector call.
    analytics_panels = ("hotspots_panel", "coupling_panel", "contributors_panel")

    @staticmethod
    def _window(obj: Repository) -> AnalyticsWindow:
        if not hasattr(obj, "_analytics_window"):
            obj._analytics_window = code_window(project=obj.project, repository=obj)  # type: ignore[attr-defined]
        return obj._analytics_window  # type: ignore[attr-defined]

    def _figures(self, obj: Repository) -> dict[str, Any]:
        window = self._window(obj)
        return {"project": obj.project, "repository": obj, "since": window.since, "until": window.until}

    @staticmethod
    def _caption(window: AnalyticsWindow, what: str) -> SafeString:
        return format_html("<p>{}, over {}.</p>", what, window.describe())

    @admin.display(description="Hotspots")
    def hotspots_panel(self, obj: Repository) -> SafeString:
        """The top files by changes x lines over the window."""
        rows = file_hotspots(**self._figures(obj), limit=HOTSPOTS_PANEL_ROWS)
        table = admin_table(
            ["File", "Score", "Changes", "Lines", "Churn", "Authors", "Last change (UTC)"],
            (
                (
                    format_html(
                        '<a href="{}">{}</a>',
                        reverse("admin:repos_file_change", args=[row["file"]]),
                        row["path"],
                    ),
                    row["score"],
                    row["changes"],
                    row["lines"],
                    row["churn"],
                    row["authors"],
                    row["last_changed_at"].strftime("%Y-%m-%d %H:%M"),
                )
                for row in rows
            ),
            empty="No file of the tree changed in this window.",
        )
        caption = self._caption(self._window(obj), "Ranked by changes x lines (docs/analytics.md)")
        return format_html("{}{}", caption, table)

    @admin.display(description="Change coupling")
    def coupling_panel(self, obj: Repository) -> SafeString:
        """Pairs of files changed by the same commits, over the window."""
        rows = change_coupling(**self._figures(obj), limit=HOTSPOTS_PANEL_ROWS)
        table = admin_table(
            ["File", "File", "Shared commits", "Degree"],
            ((row["path_a"], row["path_b"], row["shared"], f"{row['degree']:.0%}") for row in rows),
            empty="No two files changed together often enough.",
        )
        return format_html(
            "{}{}", self._caption(self._window(obj), "Files changed by the same commits"), table
        )

    @admin.display(description="Contributors")
    def contributors_panel(self, obj: Repository) -> SafeString:
        """Authors of the window, most commits (merges apart) first."""
        rows = contributor_stats(**self._figures(obj), limit=HOTSPOTS_PANEL_ROWS)
        table = admin_table(
            ["Author", "Commits", "Merges", "Lines +/-", "Active days", "Main areas"],
            (
                (
                    f"{row['author_name']} <{row['author_email']}>",
                    row["commits"],
                    row["merges"],
                    f"+{row['lines_added']}/-{row['lines_deleted']}",
                    row["active_days"],
                    ", ".join(area["area"] for area in row["main_areas"]),
                )
                for row in rows
            ),
            empty="No commits in this window.",
        )
        caption = self._caption(self._window(obj), "Commits and merges counted apart")
        return format_html("{}{}", caption, table)

    def save_model(self, request: HttpRequest, obj: Repository, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        instance_adopt(
            obj,
            repository_register(
                project=obj.project,
                source=obj.source,
                name=obj.name,
                default_branch=obj.default_branch,
                is_active=obj.is_active,
            ),
        )

    @admin.action(description="Ingest now (incrementally)", permissions=["change"])
    def ingest_now(self, request: HttpRequest, queryset: QuerySet[Repository]) -> None:
        # The work is enqueued; the page returns at once and the runs show their progress.
        for repository in queryset:
            try:
                result = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.ADMIN)
            except ValidationError as exc:
                self.message_user(request, f"{repository}: {validation_message(exc)}", messages.ERROR)
                continue
            verb = "queued" if result.created else "already under way"
            self.message_user(
                request, f"{repository}: ingestion run {result.run.pk} {verb}.", messages.SUCCESS
            )


class CommitTaskLinkInline(ReadOnlyInline):
    model = CommitTaskLink
    fields = ["task", "action", "status", "minutes", "outcome", "note", "created_at"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[CommitTaskLink]:
        return super().get_queryset(request).select_related("task__project")


@admin.register(Commit)
class CommitAdmin(ReadOnlyAdmin):
    list_display = [
        "short_sha",
        "repository",
        "subject_preview",
        "author_name",
        "timestamp",
        "additions",
        "deletions",
    ]
    list_select_related = ["repository"]
    # The repository filter lists repositories from their own (small) table; a "related only" filter
    # would scan every commit for distinct repositories on each page load.
    list_filter = ["repository", "is_merge"]
    # Prefix and exact matches only: both use an index, a substring search of every message would not.
    search_fields = ["^sha", "=author_email"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ["-timestamp"]  # idx_commits_timestamp, read backwards
    list_per_page = 50
    inlines = [CommitTaskLinkInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Commit]:
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            # Lists show the first line only: read 100 characters of the message, not all of it.
            queryset = queryset.defer("message").annotate(subject_head=Left("message", 100))
        return queryset

    @admin.display(description="Message")
    def subject_preview(self, obj: Commit) -> str:
        head = getattr(obj, "subject_head", None)
        return (head if head is not None else obj.message).split("\n", 1)[0]


@admin.register(FileChange)
class FileChangeAdmin(ReadOnlyAdmin):
    list_display = ["path", "change_type", "added", "deleted", "is_binary", "commit", "repository"]
    list_select_related = ["commit", "repository"]
    list_filter = ["change_type", "is_binary"]
    search_fields = ["^path"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ["-id"]
    raw_id_fields = ["commit", "repository"]
    list_per_page = 50


@admin.register(File)
class FileAdmin(ReadOnlyAdmin):
    list_display = [
        "path",
        "repository",
        "language",
        "lines",
        "size",
        "churn",
        "commit_count",
        "last_changed_at",
    ]
    list_select_related = ["repository"]
    list_filter = ["language", "is_binary", "repository"]
    search_fields = ["^path"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ["repository_id", "-churn"]  # idx_files_repo_churn
    # Only indexed sorts on a table of every file of every repository: churn and commit count read
    # idx_files_churn / idx_files_commit_count (the admin adds -id as tie-breaker, which they end with).
    sortable_by = ["churn", "commit_count"]


@admin.register(CommitTaskLink)
class CommitTaskLinkAdmin(ReadOnlyAdmin):
    list_display = ["commit", "task", "action", "status", "minutes", "outcome", "note", "created_at"]
    list_select_related = ["commit", "task__project"]
    # "Refused" lists every request a commit made that APM would not carry out, with the reason.
    list_filter = ["outcome", "action"]
    raw_id_fields = ["commit", "task"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator


@admin.register(IngestionRun)
class IngestionRunAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "repository",
        "status",
        "trigger",
        "progress_display",
        "commits_done",
        "created_at",
        "finished_at",
    ]
    list_select_related = ["repository"]
    list_filter = ["status", "trigger"]
    search_fields = ["repository__name"]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False

    @admin.display(description="Progress")
    def progress_display(self, obj: IngestionRun) -> str:
        return f"{obj.progress:.0%}"
