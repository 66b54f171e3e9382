"""Admin for tasks, their dependencies, history and time. Changes go through tasks.services."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

import projects.admin
from apm.admin import ReadOnlyAdmin, ReadOnlyInline, instance_adopt, validation_message
from apm.users import request_user
from projects.keys import TASK_KEY_RE
from projects.models import Project
from tasks.models import Task, TaskDependency, TaskEvent, TimeEntry
from tasks.services import (
    TASK_UPDATABLE_FIELDS,
    task_assign,
    task_assignee_validate,
    task_create,
    task_delete,
    task_dependency_add,
    task_dependency_reaches,
    task_dependency_remove,
    task_parent_validate,
    task_transition,
    task_transition_check,
    task_update,
)

if TYPE_CHECKING:
    from typing import TypedDict

    from django_stubs_ext import WithAnnotations

    class _OpenTaskCount(TypedDict):
        open_task_count: int


SOURCE = TaskEvent.Source.ADMIN


class TaskAdminForm(forms.ModelForm):
    class Meta:
        model = Task
        fields = [
            "project",
            "title",
            "description",
            "status",
            "priority",
            "assignee",
            "due_date",
            "estimate_hours",
            "parent",
        ]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        project = data.get("project") or (self.instance.project if self.instance.pk else None)
        if project is None:
            return data
        # On add, the chosen project is not on self.instance yet (the form copies it after clean()).
        task = self.instance if self.instance.pk is not None else Task(project=project)
        checks = [
            lambda: task_assignee_validate(project=project, assignee=data.get("assignee")),
            lambda: task_parent_validate(task=task, parent=data.get("parent")),
        ]
        if self.instance.pk is not None and "status" in self.changed_data and data.get("status"):
            checks.append(lambda: task_transition_check(task=self.instance_saved, status=data["status"]))
        for check in checks:
            try:
                check()
            except ValidationError as exc:
                self._update_errors(exc)  # type: ignore[attr-defined]  # Django's, not in its stubs
        return data

    @property
    def instance_saved(self) -> Task:
        # The checks need the task as stored, not the instance the form is about to change.
        return Task.objects.select_related("project").get(pk=self.instance.pk)


class DependencyInlineFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        task = self.instance
        for form in self.forms:
            depends_on = form.cleaned_data.get("depends_on") if form.cleaned_data else None
            if depends_on is None or form.cleaned_data.get("DELETE") or task.pk is None:
                continue
            if depends_on.project_id != task.project_id:
                form.add_error("depends_on", f"{depends_on.key} belongs to another project.")
            elif depends_on.pk == task.pk or task_dependency_reaches(start=depends_on, target=task):
                form.add_error(
                    "depends_on", f"{depends_on.key} already waits on {task.key}: that would be a cycle."
                )


class DependencyInline(admin.TabularInline):
    model = TaskDependency
    fk_name = "task"
    formset = DependencyInlineFormSet
    extra = 0
    autocomplete_fields = ["depends_on"]
    verbose_name = "waits on"
    verbose_name_plural = "waits on"


class TaskEventInline(ReadOnlyInline):
    model = TaskEvent
    # A tuple: the stubs type fields and readonly_fields apart, so no list is valid as both.
    fields = ("created_at", "kind", "source", "actor", "from_status", "to_status", "commit_sha", "data")
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskEvent]:
        return super().get_queryset(request).select_related("actor")


class TimeEntryInline(admin.TabularInline):
    model = TimeEntry
    extra = 0
    fields = ["spent_on", "minutes", "user", "author_email", "source", "source_ref", "note"]
    autocomplete_fields = ["user"]


def _transition_action(status: str, label: str) -> Callable[[TaskAdmin, HttpRequest, QuerySet[Task]], None]:
    @admin.action(description=f"Move selected tasks to “{label}”", permissions=["change"])
    def action(model_admin: TaskAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        moved, refused = 0, []
        for task in queryset.select_related("project"):
            try:
                task_transition(task=task, status=status, source=SOURCE, actor=request_user(request))
            except ValidationError as exc:
                refused.append(validation_message(exc))
            else:
                moved += 1
        if moved:
            model_admin.message_user(request, f"{moved} task(s) moved to {label}.", messages.SUCCESS)
        for reason in refused:
            model_admin.message_user(request, reason, messages.ERROR)

    action.__name__ = f"transition_to_{status}"
    return action


@admin.register(Task)
class TaskAdmin(projects.admin.LiveProjectRowsMixin):
    form = TaskAdminForm
    list_display = ["key_display", "title", "status", "priority", "assignee", "due_date", "updated_at"]
    list_select_related = ["project", "assignee"]
    list_filter = ["status", "priority", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["title", "project__key"]
    autocomplete_fields = ["project", "assignee", "parent"]
    readonly_fields = ["key_display", "reporter", "started_at", "closed_at", "created_at", "updated_at"]
    ordering = ["project__key", "number"]
    list_per_page = 50
    # repos.admin adds the commits that name the task, before its history.
    inlines: ClassVar[list[Any]] = [DependencyInline, TimeEntryInline, TaskEventInline]
    actions = [
        _transition_action(Task.Status.IN_PROGRESS, "In progress"),
        _transition_action(Task.Status.DONE, "Done"),
        _transition_action(Task.Status.CANCELLED, "Cancelled"),
    ]

    def delete_model(self, request: HttpRequest, obj: Task) -> None:
        task_delete(task=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        # One task at a time through the service, so every project's figures are dropped.
        for task in queryset:
            task_delete(task=task)

    @admin.display(description="Key", ordering="number")
    def key_display(self, obj: Task) -> str:
        return obj.key if obj.pk else "-"

    def get_readonly_fields(self, request: HttpRequest, obj: Task | None = None) -> list[str]:
        return [*self.readonly_fields, "project"] if obj is not None else list(self.readonly_fields)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Task], search_term: str
    ) -> tuple[QuerySet[Task], bool]:
        # "APM-42" finds that task directly through the (project, number) unique index.
        match = TASK_KEY_RE.match(search_term.strip().upper())
        if match:
            return queryset.filter(project__key=match["project"], number=int(match["number"])), False
        return super().get_search_results(request, queryset, search_term)

    def save_model(self, request: HttpRequest, obj: Task, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = task_create(
                project=data["project"],
                title=data["title"],
                description=data["description"],
                status=data["status"],
                priority=data["priority"],
                assignee=data["assignee"],
                due_date=data["due_date"],
                estimate_hours=data["estimate_hours"],
                parent=data["parent"],
                source=SOURCE,
                actor=request_user(request),
            )
            instance_adopt(obj, created)
            return
        task = Task.objects.select_related("project").get(pk=obj.pk)
        updates = {name: data[name] for name in form.changed_data if name in TASK_UPDATABLE_FIELDS}
        task = task_update(task=task, source=SOURCE, actor=request_user(request), **updates)
        if "assignee" in form.changed_data:
            task = task_assign(
                task=task, assignee=data["assignee"], source=SOURCE, actor=request_user(request)
            )
        if "status" in form.changed_data:
            task = task_transition(
                task=task, status=data["status"], source=SOURCE, actor=request_user(request)
            )
        instance_adopt(obj, task)

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        if formset.model is not TaskDependency:
            super().save_formset(request, form, formset, change)
            return
        task = form.instance
        # What formset.save() would record; the admin's change message (history) reads these.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            data = inline_form.cleaned_data
            if not data or not inline_form.has_changed():
                continue
            # The form has already put the new choice on its instance; the stored one is in `initial`.
            previous_id = inline_form.initial.get("depends_on")
            chosen = None if data.get("DELETE") else data.get("depends_on")
            if previous_id is not None and (chosen is None or chosen.pk != previous_id):
                previous = Task.objects.select_related("project").get(pk=previous_id)
                task_dependency_remove(
                    task=task, depends_on=previous, source=SOURCE, actor=request_user(request)
                )
                if chosen is None:
                    formset.deleted_objects.append(inline_form.instance)
            if chosen is not None and chosen.pk != previous_id:
                dependency = task_dependency_add(
                    task=task, depends_on=chosen, source=SOURCE, actor=request_user(request)
                )
                if previous_id is None:
                    formset.new_objects.append(dependency)
                else:
                    formset.changed_objects.append((dependency, ["depends_on"]))


@admin.register(TaskEvent)
class TaskEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "task", "kind", "source", "actor", "from_status", "to_status", "commit_sha"]
    list_select_related = ["task__project", "actor"]
    list_filter = ["kind", "source"]
    search_fields = ["=commit_sha"]
    show_full_result_count = False
    ordering = ["-created_at", "-id"]
    raw_id_fields = ["task", "project", "actor"]


@admin.register(TimeEntry)
class TimeEntryAdmin(admin.ModelAdmin):
    list_display = ["spent_on", "task", "minutes", "user", "author_email", "source"]
    list_select_related = ["task__project", "user"]
    list_filter = ["source"]
    search_fields = ["author_email", "=source_ref"]
    autocomplete_fields = ["task", "user"]
    show_full_result_count = False
    ordering = ["-spent_on", "-id"]


# --- The project's admin page with its open tasks -----------------------------------------------------


class OpenTaskInline(ReadOnlyInline):
    """The project's open tasks; closed ones stay reachable through the task list's filters."""

    model = Task
    fk_name = "project"
    # A tuple: the stubs type fields and readonly_fields apart, so no list is valid as both.
    fields = ("number", "title", "status", "priority", "assignee", "due_date")
    readonly_fields = fields
    ordering = ["number"]
    verbose_name_plural = "open tasks"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        return (
            super().get_queryset(request).exclude(status__in=Task.CLOSED_STATUSES).select_related("assignee")
        )


class ProjectAdmin(projects.admin.ProjectAdmin):
    """The project with its members (projects.admin) and its open tasks."""

    list_display = ["key", "name", "status", "open_tasks", "start_date", "target_date", "updated_at"]
    inlines = [*projects.admin.ProjectAdmin.inlines, OpenTaskInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        # One grouped count for the whole page instead of a query per row.
        return (
            super()
            .get_queryset(request)
            .annotate(open_task_count=Count("tasks", filter=~Q(tasks__status__in=Task.CLOSED_STATUSES)))
        )

    @admin.display(description="Open tasks", ordering="open_task_count")
    def open_tasks(self, obj: WithAnnotations[Project, _OpenTaskCount]) -> int:
        return obj.open_task_count


admin.site.unregister(Project)
admin.site.register(Project, ProjectAdmin)
