"""Admin for repositories and ingestion output, built for tables of millions of rows.

Commit and file-change lists skip the full COUNT(*) (``show_full_result_count = False``), join what
they show in the same query, order by indexed columns and leave heavy text out of the list query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.db.models.fields.related import RelatedField
from django.db.models.functions import Left
from django.http import HttpRequest

import tasks.admin
from apm.admin import (
    EstimatedCountPaginator,
    ReadOnlyAdmin,
    ReadOnlyInline,
    instance_adopt,
    validation_message,
)
from apm.jobs import BrokerUnavailable
from repos.deletion import repository_delete_request
from repos.git import remote_host_check, source_parse
from repos.models import Commit, CommitTaskLink, File, FileChange, IngestionRun, PushDelivery, Repository
from repos.services import ingestion_request, repository_register
from tasks.models import Task

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


class LiveRepositoryRowsMixin(admin.ModelAdmin):
    """An admin list (and change page) of a repository's rows that leaves out those of a repository
    being deleted: hidden at once, as from the API and the pages, while the task deletes them in batches
    (repos.deletion). ``repository_lookup`` leads to the repository; it is joined for the list anyway."""

    repository_lookup = "repository"

    def _live(self) -> dict[str, Any]:
        return {f"{self.repository_lookup}__deleting_since__isnull": True}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).filter(**self._live())

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        # A list filtered by nothing but this still reads the table's row estimate: no COUNT(*) over a
        # table of millions of rows joined to the repositories on every page.
        paginator = super().get_paginator(request, queryset, per_page, orphans, allow_empty_first_page)
        if isinstance(paginator, EstimatedCountPaginator):
            paginator.standing_filters = self._live()
        return paginator


class LiveRepositoryFilter(admin.RelatedFieldListFilter):
    """The repository filter of a list, offering the repositories not being deleted only."""

    def field_choices(
        self, field: RelatedField[Any, Any], request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, StrOrPromise]]:
        ordering = self.field_admin_ordering(field, request, model_admin)
        choices = field.get_choices(
            include_blank=False, ordering=ordering, limit_choices_to={"deleting_since__isnull": True}
        )
        # Without a blank choice, a list of (pk, label) pairs, as the parent's (the stubs type it wider).
        return cast("list[tuple[str, StrOrPromise]]", choices)


class IngestionRunInline(ReadOnlyInline):
    model = IngestionRun
    # A tuple: the stubs type fields and readonly_fields apart, so no list is valid as both.
    fields = ("created_at", "status", "trigger", "commits_done", "commits_total", "error")
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
    # Read-only fields of the change page that apps above add (insights.admin: the code figures).
    panels: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj: Repository | None = None) -> list[str]:
        # The source is checked once, at registration; changing it would mix two histories.
        if obj is None:
            return list(self.readonly_fields)
        return [*self.readonly_fields, "project", "source", *self.panels]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Repository]:
        # A repository being deleted is gone for people at once; its rows go in the background.
        return super().get_queryset(request).filter(deleting_since__isnull=True)

    def get_deleted_objects(
        self, objs: Sequence[Repository] | QuerySet[Repository], request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        # The confirmation page names the repositories only: listing what hangs off them would walk
        # every commit and file change through the collector, the cost the deletion itself avoids.
        repositories = list(objs)
        allowed = all(self.has_delete_permission(request, obj) for obj in repositories)
        names = [f"{repository} (with everything ingested from it)" for repository in repositories]
        perms_needed = set() if allowed else {str(Repository._meta.verbose_name)}
        return names, {str(Repository._meta.verbose_name_plural): len(repositories)}, perms_needed, []

    def delete_model(self, request: HttpRequest, obj: Repository) -> None:
        self._delete_request(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Repository]) -> None:
        # Each through the service: marked at once, deleted in batches by the task, never by the
        # collector (which would read millions of file changes into memory).
        for repository in queryset:
            self._delete_request(request, repository)

    def _delete_request(self, request: HttpRequest, repository: Repository) -> None:
        try:
            repository_delete_request(repository=repository, by=request.user)
        except ValidationError as exc:
            self.message_user(request, f"{repository}: {validation_message(exc)}", messages.ERROR)
        except BrokerUnavailable as exc:
            self.message_user(request, f"{repository}: {exc}", messages.ERROR)
        else:
            self.message_user(request, f"{repository} is being deleted in the background.", messages.INFO)

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
            except BrokerUnavailable as exc:
                # The others would each wait for the same refusal: one message says it for all of them.
                self.message_user(request, f"Nothing was queued: {exc}. Try again later.", messages.ERROR)
                return
            verb = "queued" if result.created else "already under way"
            self.message_user(
                request, f"{repository}: ingestion run {result.run.pk} {verb}.", messages.SUCCESS
            )


class CommitTaskLinkInline(ReadOnlyInline):
    model = CommitTaskLink
    # A tuple: the stubs type fields and readonly_fields apart, so no list is valid as both.
    fields = ("task", "action", "status", "minutes", "outcome", "note", "created_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[CommitTaskLink]:
        return super().get_queryset(request).select_related("task__project")


@admin.register(Commit)
class CommitAdmin(LiveRepositoryRowsMixin, ReadOnlyAdmin):
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
    list_filter = [("repository", LiveRepositoryFilter), "is_merge"]
    # Prefix and exact matches only: both use an index, a substring search of every message would not.
    search_fields = ["^sha", "=author_email"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ["-timestamp"]  # idx_commits_timestamp, read backwards
    list_per_page = 50
    inlines = [CommitTaskLinkInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Commit]:
        queryset = super().get_queryset(request)
        if request.resolver_match and (request.resolver_match.url_name or "").endswith("changelist"):
            # Lists show the first line only: read 100 characters of the message, not all of it.
            queryset = queryset.defer("message").annotate(subject_head=Left("message", 100))
        return queryset

    @admin.display(description="Message")
    def subject_preview(self, obj: Commit) -> str:
        head = getattr(obj, "subject_head", None)
        return (head if head is not None else obj.message).split("\n", 1)[0]


@admin.register(FileChange)
class FileChangeAdmin(LiveRepositoryRowsMixin, ReadOnlyAdmin):
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
class FileAdmin(LiveRepositoryRowsMixin, ReadOnlyAdmin):
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
    list_filter = ["language", "is_binary", ("repository", LiveRepositoryFilter)]
    search_fields = ["^path"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ["repository_id", "-churn"]  # idx_files_repo_churn
    # Only indexed sorts on a table of every file of every repository: churn and commit count read
    # idx_files_churn / idx_files_commit_count (the admin adds -id as tie-breaker, which they end with).
    sortable_by = ["churn", "commit_count"]


@admin.register(CommitTaskLink)
class CommitTaskLinkAdmin(LiveRepositoryRowsMixin, ReadOnlyAdmin):
    list_display = ["commit", "task", "action", "status", "minutes", "outcome", "note", "created_at"]
    list_select_related = ["commit", "task__project"]
    # "Refused" lists every request a commit made that APM would not carry out, with the reason.
    list_filter = ["outcome", "action"]
    raw_id_fields = ["commit", "task"]
    repository_lookup = "commit__repository"
    show_full_result_count = False
    paginator = EstimatedCountPaginator


@admin.register(IngestionRun)
class IngestionRunAdmin(LiveRepositoryRowsMixin, ReadOnlyAdmin):
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


@admin.register(PushDelivery)
class PushDeliveryAdmin(LiveRepositoryRowsMixin, ReadOnlyAdmin):
    """Verified push webhooks, to see which delivery started which run and that one sent again did not."""

    list_display = ["delivery_id", "repository", "received_at", "run"]
    list_select_related = ["repository", "run"]
    # Exact matches only (the id a git host shows beside its delivery): the table holds
    # APM_PUSH_DELIVERIES_KEEP_DAYS of pushes, and no substring search runs over it.
    search_fields = ["=delivery_id", "=body_sha256"]
    raw_id_fields = ["repository", "run"]
    ordering = ["-received_at"]  # idx_push_deliveries_received, read backwards
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50


# --- The task's admin page with the commits that name it ---------------------------------------------


class CommitLinkInline(ReadOnlyInline):
    """The commits that name the task, what each asked, and what became of it (refusals say why)."""

    model = CommitTaskLink
    # A tuple: the stubs type fields and readonly_fields apart, so no list is valid as both.
    fields = ("commit", "action", "status", "minutes", "outcome", "note", "created_at")
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    verbose_name_plural = "commits"

    def get_queryset(self, request: HttpRequest) -> QuerySet[CommitTaskLink]:
        # Not the commits of a repository being deleted (repos.deletion), as on the task's API page.
        return (
            super()
            .get_queryset(request)
            .filter(commit__repository__deleting_since__isnull=True)
            .select_related("commit__repository")
        )


class TaskAdmin(tasks.admin.TaskAdmin):
    """A task with its dependencies, time and history (tasks.admin) and the commits that name it."""

    inlines = [*tasks.admin.TaskAdmin.inlines[:-1], CommitLinkInline, tasks.admin.TaskAdmin.inlines[-1]]


admin.site.unregister(Task)
admin.site.register(Task, TaskAdmin)
