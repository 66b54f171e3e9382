"""Filters of the repository, run, commit, file change and file lists."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from apm.api.filters import IdFilter
from projects.keys import TASK_KEY_RE
from repos.models import Commit, File, FileChange, IngestionRun, Repository

PROJECT_HELP = "Project key."


class RepositoryFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(
        field_name="project__key", lookup_expr="iexact", help_text=PROJECT_HELP
    )

    class Meta:
        model = Repository
        fields = ["project", "kind", "is_active"]


class IngestionRunFilter(django_filters.FilterSet):
    repository = IdFilter(field_name="repository_id", help_text="Repository id.")
    project = django_filters.CharFilter(
        field_name="repository__project__key", lookup_expr="iexact", help_text=PROJECT_HELP
    )

    class Meta:
        model = IngestionRun
        fields = ["project", "repository", "status", "trigger"]


class CommitFilter(django_filters.FilterSet):
    repository = IdFilter(field_name="repository_id", help_text="Repository id.")
    project = django_filters.CharFilter(
        field_name="repository__project__key", lookup_expr="iexact", help_text=PROJECT_HELP
    )
    author = django_filters.CharFilter(
        field_name="author_email", help_text="Author e-mail, exactly as git has it."
    )
    since = django_filters.IsoDateTimeFilter(
        field_name="timestamp", lookup_expr="gte", help_text="Committed at or after."
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="timestamp", lookup_expr="lt", help_text="Committed before."
    )
    sha = django_filters.CharFilter(
        field_name="sha", lookup_expr="startswith", min_length=4, help_text="A sha or its first characters."
    )
    task = django_filters.CharFilter(method="filter_task", help_text="Commits linked to this task (APM-12).")
    is_merge = django_filters.BooleanFilter()

    class Meta:
        model = Commit
        fields = ["repository", "project", "author", "since", "until", "sha", "task", "is_merge"]

    def filter_task(self, queryset: QuerySet[Commit], name: str, value: str) -> QuerySet[Commit]:
        match = TASK_KEY_RE.match(value.strip().upper())
        if match is None:
            return queryset.none()
        return queryset.filter(
            task_links__task__project__key=match["project"], task_links__task__number=int(match["number"])
        )


class FileChangeFilter(django_filters.FilterSet):
    repository = IdFilter(field_name="repository_id", help_text="Repository id.")
    commit = IdFilter(field_name="commit_id", help_text="Commit id.")
    sha = django_filters.CharFilter(field_name="commit__sha", help_text="Full sha of the commit.")
    path_prefix = django_filters.CharFilter(field_name="path", lookup_expr="startswith")

    class Meta:
        model = FileChange
        fields = ["repository", "commit", "sha", "path", "path_prefix", "change_type"]


class FileFilter(django_filters.FilterSet):
    repository = IdFilter(field_name="repository_id", help_text="Repository id.")
    project = django_filters.CharFilter(
        field_name="project__key", lookup_expr="iexact", help_text=PROJECT_HELP
    )
    path_prefix = django_filters.CharFilter(
        field_name="path", lookup_expr="startswith", help_text="Files under this path, e.g. `src/`."
    )

    class Meta:
        model = File
        fields = ["project", "repository", "language", "path_prefix", "is_binary"]
