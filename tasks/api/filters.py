"""Filters of the task list."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from apm.api.filters import IdFilter
from apm.users import request_user
from tasks.models import Task


class TaskFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(
        field_name="project__key", lookup_expr="iexact", help_text="Project key."
    )
    status = django_filters.MultipleChoiceFilter(choices=Task.Status.choices)
    priority = django_filters.MultipleChoiceFilter(choices=Task.Priority.choices)
    assignee = django_filters.CharFilter(
        method="filter_assignee", help_text="A username, `me`, or `none` for unassigned tasks."
    )
    is_open = django_filters.BooleanFilter(method="filter_is_open", help_text="Open (not done or cancelled).")
    parent = IdFilter(field_name="parent_id", help_text="Id of the parent task.")
    due_before = django_filters.DateFilter(field_name="due_date", lookup_expr="lt")
    due_after = django_filters.DateFilter(field_name="due_date", lookup_expr="gte")
    updated_since = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Task
        fields = ["project", "status", "priority", "assignee", "is_open", "parent"]

    def filter_assignee(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        if value == "me":
            assert self.request is not None  # the API hands every filter set its request
            return queryset.filter(assignee=request_user(self.request))
        return queryset.filter(assignee__username=value)

    def filter_is_open(self, queryset: QuerySet[Task], name: str, value: bool) -> QuerySet[Task]:
        if value:
            return queryset.exclude(status__in=Task.CLOSED_STATUSES)
        return queryset.filter(status__in=Task.CLOSED_STATUSES)
