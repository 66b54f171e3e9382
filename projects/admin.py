"""Admin for projects and memberships. Saves go through projects.services.

``ProjectAdmin`` here knows projects and their members only. The apps above add what they know by
registering a subclass in its place, in the order of the layers (docs/architecture.md): tasks add the
open tasks (``tasks.admin``), insights add the health, progress, priorities and burndown panels
(``insights.admin``). Their ``panels`` are read-only fields shown on the change page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from apm.admin import instance_adopt, message_validation_error, validation_message
from apm.jobs import BrokerUnavailable
from apm.users import request_user
from projects.deletion import project_delete_request
from projects.models import Invitation, Membership, Project
from projects.services import (
    PROJECT_UPDATABLE_FIELDS,
    invitation_create,
    invitation_revoke,
    invitation_validate,
    membership_remove,
    membership_set,
    project_create,
    project_update,
)
from projects.workflow import GRAMMAR_FIELDS

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups


class LiveProjectRowsMixin(admin.ModelAdmin):
    """An admin list of a project's rows that leaves out those of a project being deleted (hidden at
    once, its rows deleted in the background: projects.deletion). ``project_lookup`` leads to the project."""

    project_lookup = "project"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        live = {f"{self.project_lookup}__deleting_since__isnull": True}
        return super().get_queryset(request).filter(**live)


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


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "status", "start_date", "target_date", "updated_at"]
    list_filter = ["status"]
    search_fields = ["key", "name"]
    ordering = ["key"]
    inlines: ClassVar[list[Any]] = [MembershipInline]
    fields = ["key", "name", "description", "status", "start_date", "target_date", "last_task_number"]
    readonly_fields = ["last_task_number"]
    # Read-only fields of the change page that apps above add (their figures of the project).
    panels: tuple[str, ...] = ()

    def get_deleted_objects(
        self, objs: Sequence[Project] | QuerySet[Project], request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        # The confirmation page names the projects only: listing what hangs off them would walk every
        # task, commit and file change through the collector, the cost the deletion itself avoids.
        projects = list(objs)
        allowed = all(self.has_delete_permission(request, obj) for obj in projects)
        everything = "with its repositories, tasks, members, webhooks and exports"
        names = [f"{project} ({everything})" for project in projects]
        perms_needed = set() if allowed else {str(Project._meta.verbose_name)}
        return names, {str(Project._meta.verbose_name_plural): len(projects)}, perms_needed, []

    def delete_model(self, request: HttpRequest, obj: Project) -> None:
        self._delete_request(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        # Each through the service: marked at once, deleted in batches by the task, never by the
        # collector (which would read every row of every repository of the project into memory).
        for project in queryset:
            self._delete_request(request, project)

    def _delete_request(self, request: HttpRequest, project: Project) -> None:
        try:
            project_delete_request(project=project, by=request.user)
        except ValidationError as exc:
            self.message_user(request, f"{project}: {validation_message(exc)}", messages.ERROR)
        except BrokerUnavailable as exc:
            self.message_user(request, f"{project}: {exc}", messages.ERROR)
        else:
            self.message_user(request, f"{project} is being deleted in the background.", messages.INFO)

    def get_readonly_fields(self, request: HttpRequest, obj: Project | None = None) -> list[str]:
        # Task keys embed the project key, so it cannot change once the project exists.
        if obj is None:
            return list(self.readonly_fields)
        return [*self.readonly_fields, "key", *self.panels]

    def get_fields(self, request: HttpRequest, obj: Project | None = None) -> _FieldGroups:
        # How commit messages move the project's tasks (docs/automation.md): set once the project exists.
        fields = list(super().get_fields(request, obj))
        return [*fields, *GRAMMAR_FIELDS, *self.panels] if obj is not None else fields

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
            owner=request_user(request),
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
        super().clean()
        data = self.cleaned_data
        instance = self.instance
        if instance.pk is not None and data.get("role") != Membership.Role.OWNER and _is_last_owner(instance):
            self.add_error("role", "This is the project's last owner; make someone else owner first.")
        return data


@admin.register(Membership)
class MembershipAdmin(LiveProjectRowsMixin):
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


class InvitationAdminForm(forms.ModelForm):
    class Meta:
        model = Invitation
        fields = ["project", "username", "role"]

    def _get_validation_exclusions(self) -> set[str]:
        # Inviting a username the project invited before renews that invitation (invitation_create), as
        # through the API: the one-invitation-per-username constraint is the service's to keep, not a
        # form error. The username's spelling is checked in clean() (invitation_validate).
        return {*super()._get_validation_exclusions(), "username"}  # type: ignore[misc]  # not in the stubs

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if self.instance.pk is None and data.get("project") and data.get("username") and data.get("role"):
            try:
                data["username"] = invitation_validate(
                    project=data["project"], username=data["username"], role=data["role"]
                )
            except ValidationError as exc:
                self.add_error(None, exc)
        return data


@admin.register(Invitation)
class InvitationAdmin(LiveProjectRowsMixin):
    """Invitations, as owners make them through the API; operators may invite too, or add members directly.

    An invitation is answered by its invitee, so an existing one is read-only here: it can be revoked,
    not edited. Inviting the same username again renews its invitation (invitation_create).
    """

    form = InvitationAdminForm
    list_display = ["username", "project", "role", "status", "expires_at", "invited_by", "created_at"]
    list_filter = ["status", "role"]
    list_select_related = ["project", "invited_by"]
    search_fields = ["username", "project__key"]
    autocomplete_fields = ["project"]
    show_full_result_count = False
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Invitation | None = None) -> list[str]:
        if obj is None:
            return []
        return ["project", "username", "role", "status", "invited_by", "expires_at", "responded_at"]

    def get_fields(self, request: HttpRequest, obj: Invitation | None = None) -> _FieldGroups:
        # An existing invitation is shown whole and read-only; a new one asks for the three things it offers.
        return (
            tuple(self.get_readonly_fields(request, obj))
            if obj is not None
            else ("project", "username", "role")
        )

    def save_model(self, request: HttpRequest, obj: Invitation, form: forms.ModelForm, change: bool) -> None:
        if change:
            return  # nothing is editable on an existing invitation
        invitation, _renewed = invitation_create(
            project=obj.project, username=obj.username, role=obj.role, invited_by=request_user(request)
        )
        instance_adopt(obj, invitation)

    def has_delete_permission(self, request: HttpRequest, obj: Invitation | None = None) -> bool:
        return False  # revoked, not deleted: the row records who was invited, by whom, and the answer

    @admin.action(description="Revoke the selected pending invitations")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        for invitation in queryset.filter(status=Invitation.Status.PENDING):
            invitation_revoke(invitation=invitation)
