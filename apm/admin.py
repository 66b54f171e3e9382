"""Helpers shared by APM's admin classes."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpRequest


def instance_adopt(target: models.Model, source: models.Model) -> None:
    """Make the admin's unsaved ``target`` the row a service created as ``source``.

    The admin keeps using the instance its form built (for inlines, the log entry and the redirect);
    the service created its own, so the form's instance takes over the created row's state.
    """
    target.__dict__.update(source.__dict__)


def validation_message(exc: ValidationError) -> str:
    """A ``ValidationError`` as one line for the admin's message bar."""
    if hasattr(exc, "error_dict"):
        return " ".join(message for messages_ in exc.message_dict.values() for message in messages_)
    return " ".join(exc.messages)


def message_validation_error(
    model_admin: admin.ModelAdmin, request: HttpRequest, exc: ValidationError
) -> None:
    model_admin.message_user(request, validation_message(exc), level=messages.ERROR)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by APM itself (history, ingestion output): operators look, they do not edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False
