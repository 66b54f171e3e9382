"""Admin for projects and memberships. Saves go through projects.services."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import FileResponse, Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apm.admin import (
    EstimatedCountPaginator,
    ReadOnlyAdmin,
    ReadOnlyInline,
    admin_table,
    instance_adopt,
    message_validation_error,
)
from projects.analytics import Quadrant, project_burndown, project_health, project_progress, task_priorities
from projects.exports import export_content_type
from projects.models import (
    ExportJob,
    HealthLevel,
    Membership,
    Project,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from projects.services import (
    PROJECT_UPDATABLE_FIELDS,
    membership_remove,
    membership_set,
    project_create,
    project_update,
)
from projects.webhooks import (
    PING_EVENT,
    WEBHOOK_UPDATABLE_FIELDS,
    webhook_delivery_redeliver,
    webhook_subscription_create,
    webhook_subscription_delete,
    webhook_subscription_secret_rotate,
    webhook_subscription_update,
    webhook_url_validate,
)
from tasks.models import Task


class MembershipInlineFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if self.instance.pk is None:
            return  # the creating operator is made owner
        kept_roles = [
            form.cleaned_data.get("role")
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        if Membership.Role.OWNER not in kept_roles:
            raise ValidationError("A project needs at least one owner.")


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipInlineFormSet
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


class OpenTaskInline(ReadOnlyInline):
    """The project's open tasks; closed ones stay reachable through the task list's filters."""

    model = Task
    fk_name = "project"
    fields = ["number", "title", "status", "priority", "assignee", "due_date"]
    readonly_fields = fields
    ordering = ["number"]
    verbose_name_plural = "open tasks"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        return (
            super().get_queryset(request).exclude(status__in=Task.CLOSED_STATUSES).select_related("assignee")
        )


# Rows of each read-only analytics table on a change page.
PANEL_ROWS = 10


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "status", "open_tasks", "start_date", "target_date", "updated_at"]
    list_filter = ["status"]
    search_fields = ["key", "name"]
    ordering = ["key"]
    inlines = [MembershipInline, OpenTaskInline]
    fields = ["key", "name", "description", "status", "start_date", "target_date", "last_task_number"]
    readonly_fields = ["last_task_number"]

    def get_readonly_fields(self, request: HttpRequest, obj: Project | None = None) -> list[str]:
        # Task keys embed the project key, so it cannot change once the project exists.
        if obj is None:
            return list(self.readonly_fields)
        return [*self.readonly_fields, "key", *self.analytics_panels]

    # --- Health and progress panels (projects.analytics) ---------------------------------------------
    # Read-only, on the change page only; each panel runs its selector once per page view (a fixed
    # number of queries whatever the project's size).
    analytics_panels = ("health_panel", "progress_panel", "priorities_panel", "burndown_panel")

    # How commit messages move the project's tasks (docs/automation.md); set once the project exists.
    grammar_fields = (
        "commit_automation",
        "commit_close_keywords",
        "commit_status_tags",
        "commit_short_references",
        "commit_time_logging",
    )

    def get_fields(self, request: HttpRequest, obj: Project | None = None) -> list[str]:
        fields = list(super().get_fields(request, obj))
        return [*fields, *self.grammar_fields, *self.analytics_panels] if obj is not None else fields

    @admin.display(description="Health")
    def health_panel(self, obj: Project) -> str:
        health = project_health(project=obj)
        recorded = (
            f"last recorded: {obj.get_health_level_display()} ({obj.health_score}/100) "
            f"on {obj.health_checked_at:%Y-%m-%d %H:%M}"
            if obj.health_level and obj.health_checked_at
            else "not recorded yet"
        )
        reasons = format_html_join("", "<li>{}</li>", ((reason,) for reason in health["reasons"]))
        return format_html(
            "<strong>{}</strong>, score {}/100 now ({})<ul>{}</ul>",
            HealthLevel(health["level"]).label,
            health["score"],
            recorded,
            reasons or format_html("<li>{}</li>", "No risk signal."),
        )

    @admin.display(description="Progress")
    def progress_panel(self, obj: Project) -> str:
        progress = project_progress(project=obj)
        return format_html(
            "{}% done ({} of {} estimate hours, {} of {} tasks done); trend {} points per week over {} days",
            f"{progress['progress'] * 100:.1f}",
            f"{progress['estimate_hours_done']:g}",
            f"{progress['estimate_hours_total']:g}",
            progress["tasks_done"],
            progress["tasks_total"] - progress["tasks_cancelled"],
            f"{progress['trend'] * 100:+.1f}",
            progress["trend_days"],
        )

    @admin.display(description="Priorities")
    def priorities_panel(self, obj: Project) -> SafeString:
        tasks = task_priorities(project=obj)[:PANEL_ROWS]
        return admin_table(
            ["Task", "Title", "Score", "Quadrant", "Due", "Priority"],
            (
                (
                    task.key,
                    task.title,
                    task.score,
                    Quadrant(task.quadrant).label,
                    task.due_date or "-",
                    task.get_priority_display(),
                )
                for task in tasks
            ),
            empty="No open task.",
        )

    @admin.display(description="Burndown (last 4 weeks)")
    def burndown_panel(self, obj: Project) -> SafeString:
        today = timezone.localdate()
        days = project_burndown(project=obj, start=today - datetime.timedelta(days=27), end=today)["days"]
        weeks = [days[first : first + 7] for first in range(0, len(days), 7)]
        return admin_table(
            ["Week to", "Scope", "Done", "Remaining", "Ideal", "Added in the week", "Removed in the week"],
            (
                (
                    week[-1]["date"],
                    week[-1]["scope"],
                    week[-1]["done"],
                    week[-1]["remaining"],
                    week[-1]["ideal"],
                    sum(day["added"] for day in week),
                    sum(day["removed"] for day in week),
                )
                for week in weeks
            ),
            empty="No history.",
        )

    # --- end of the analytics panels -------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        # One grouped count for the whole page instead of a query per row.
        return (
            super()
            .get_queryset(request)
            .annotate(open_task_count=Count("tasks", filter=~Q(tasks__status__in=Task.CLOSED_STATUSES)))
        )

    @admin.display(description="Open tasks", ordering="open_task_count")
    def open_tasks(self, obj: Project) -> int:
        return obj.open_task_count

    def save_model(self, request: HttpRequest, obj: Project, form: forms.ModelForm, change: bool) -> None:
        if change:
            project_update(
                project=obj,
                **{
                    name: form.cleaned_data[name]
                    for name in form.changed_data
                    if name in PROJECT_UPDATABLE_FIELDS
                },
            )
            return
        created = project_create(
            key=form.cleaned_data["key"],
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            status=form.cleaned_data["status"],
            start_date=form.cleaned_data["start_date"],
            target_date=form.cleaned_data["target_date"],
            owner=request.user,
        )
        instance_adopt(obj, created)

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        project = form.instance
        # What formset.save() would record; the admin's change message (history) reads these.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        # Additions and role changes first (new owners before anyone else), removals last, so an owner
        # handover never leaves the project without an owner in between.
        changed_forms = [
            inline_form
            for inline_form in formset.forms
            if inline_form.cleaned_data
            and not inline_form.cleaned_data.get("DELETE")
            and inline_form.has_changed()
        ]
        changed_forms.sort(key=lambda inline_form: inline_form.cleaned_data["role"] != Membership.Role.OWNER)
        for inline_form in changed_forms:
            data = inline_form.cleaned_data
            is_new = inline_form.instance.pk is None
            membership = membership_set(project=project, user=data["user"], role=data["role"])
            if is_new:
                formset.new_objects.append(membership)
            else:
                formset.changed_objects.append((membership, inline_form.changed_data))
        for inline_form in formset.deleted_forms:
            if inline_form.instance.pk is not None:
                membership_remove(project=project, user=inline_form.instance.user)
                formset.deleted_objects.append(inline_form.instance)


class MembershipAdminForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["project", "user", "role"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        instance = self.instance
        if instance.pk is not None and data.get("role") != Membership.Role.OWNER and _is_last_owner(instance):
            self.add_error("role", "This is the project's last owner; make someone else owner first.")
        return data


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    form = MembershipAdminForm
    list_display = ["project", "user", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["project", "user"]
    search_fields = ["project__key", "user__username", "user__email"]
    autocomplete_fields = ["project", "user"]

    def get_readonly_fields(self, request: HttpRequest, obj: Membership | None = None) -> list[str]:
        # A membership is one user in one project; moving it would silently create another.
        return ["project", "user"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Membership, form: forms.ModelForm, change: bool) -> None:
        instance_adopt(obj, membership_set(project=obj.project, user=obj.user, role=obj.role))

    def has_delete_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        # The last owner of a project is not offered for deletion at all.
        if obj is not None and _is_last_owner(obj):
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        membership_remove(project=obj.project, user=obj.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        # Bulk deletion goes through the service too, one membership at a time, so "delete selected"
        # cannot remove a project's last owner either; refusals are reported, the rest is deleted.
        for membership in queryset.select_related("project", "user"):
            try:
                membership_remove(project=membership.project, user=membership.user)
            except ValidationError as exc:
                message_validation_error(self, request, exc)


def _is_last_owner(membership: Membership) -> bool:
    return (
        membership.role == Membership.Role.OWNER
        and not Membership.objects.filter(project_id=membership.project_id, role=Membership.Role.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    )


# --- Outgoing webhooks (projects/webhooks.py) -------------------------------------------------------


class WebhookSubscriptionAdminForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookSubscription
        fields = ["project", "url", "events", "is_active", "description"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            webhook_url_validate(url=url)  # the SSRF check, shown on the field
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["url"]) from exc
        return url


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    """Subscriptions; the secret is shown once, in a message, when it is created or rotated."""

    form = WebhookSubscriptionAdminForm
    list_display = ["url", "project", "event_list", "is_active", "created_at"]
    list_filter = ["is_active"]
    list_select_related = ["project"]
    search_fields = ["url", "project__key", "description"]
    autocomplete_fields = ["project"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    actions = ["rotate_secret"]

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookSubscription | None = None) -> list[str]:
        # A subscription belongs to its project; another project's webhook is a new subscription.
        return [*self.readonly_fields, "project"] if obj is not None else list(self.readonly_fields)

    @admin.display(description="Events")
    def event_list(self, obj: WebhookSubscription) -> str:
        return ", ".join(obj.events)

    def save_model(
        self, request: HttpRequest, obj: WebhookSubscription, form: forms.ModelForm, change: bool
    ) -> None:
        data = form.cleaned_data
        if change:
            webhook_subscription_update(
                subscription=obj,
                **{name: data[name] for name in form.changed_data if name in WEBHOOK_UPDATABLE_FIELDS},
            )
            return
        created = webhook_subscription_create(
            project=data["project"],
            url=data["url"],
            events=data["events"],
            description=data["description"],
            is_active=data["is_active"],
            created_by=request.user,
        )
        instance_adopt(obj, created)
        self.message_user(
            request,
            f"Signing secret of this webhook (shown once, copy it now): {created.secret}",
            level=messages.WARNING,
        )

    def delete_model(self, request: HttpRequest, obj: WebhookSubscription) -> None:
        webhook_subscription_delete(subscription=obj)

    @admin.action(description="Rotate the signing secret (shows the new one once)", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[WebhookSubscription]) -> None:
        for subscription in queryset:
            secret = webhook_subscription_secret_rotate(subscription=subscription)
            self.message_user(
                request, f"New signing secret of {subscription.url}: {secret}", level=messages.WARNING
            )


class WebhookEventFilter(admin.SimpleListFilter):
    """The events from their list, not from a DISTINCT over the whole delivery log."""

    title = "event"
    parameter_name = "event"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [*WebhookEvent.choices, (PING_EVENT, "Ping")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]
    ) -> QuerySet[WebhookDelivery]:
        return queryset.filter(event=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: cheap on a big table (no full count, joined subscription, indexed order)."""

    list_display = [
        "event",
        "subscription",
        "status",
        "attempts",
        "last_status_code",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["status", WebhookEventFilter]
    list_select_related = ["subscription"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ["-created_at", "-id"]  # idx_webhook_deliv_time
    raw_id_fields = ["subscription"]
    actions = ["send_again"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            queryset = queryset.defer("payload", "response_excerpt")  # shown on the detail page only
        return queryset

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        # Sending makes APM POST to outside URLs: operators who may only look at the log may not.
        return request.user.has_perm("projects.change_webhookdelivery")

    @admin.action(description="Send again (failed deliveries)", permissions=["redeliver"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        queued = sum(
            webhook_delivery_redeliver(delivery=delivery)
            for delivery in queryset.filter(status=WebhookDelivery.Status.FAILED)
            .select_related(None)
            .only("pk", "delivery_id")
        )
        self.message_user(request, f"Queued {queued} delivery(ies) again.", level=messages.SUCCESS)


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdmin):
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
            name="projects_exportjob_download",
        )
        return [download, *super().get_urls()]

    @admin.display(description="File")
    def file_link(self, job: ExportJob) -> str:
        if job.status != ExportJob.Status.SUCCEEDED or not job.file:
            return "-"
        return format_html(
            '<a href="{}">download</a>', reverse("admin:projects_exportjob_download", args=[job.pk])
        )

    def download_view(self, request: HttpRequest, pk: int) -> FileResponse:
        job = get_object_or_404(ExportJob, pk=pk, status=ExportJob.Status.SUCCEEDED)
        if not self.has_view_permission(request, job) or not job.file:
            raise Http404
        response = FileResponse(
            job.file.open("rb"), as_attachment=True, filename=job.file.name.rsplit("/", 1)[-1]
        )
        response["Content-Type"] = export_content_type(job)
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
        return response
