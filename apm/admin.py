"""Helpers shared by APM's admin classes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import connections, models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apm.models import ApiToken
from apm.services import api_token_revoke


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


class EstimatedCountPaginator(Paginator):
    """A paginator that does not COUNT(*) a huge table on every page of an unfiltered list.

    For an unfiltered list it asks the database's statistics for the table's size (PostgreSQL's
    ``pg_class.reltuples``, MySQL/MariaDB's ``information_schema.TABLES.TABLE_ROWS``) and only counts
    exactly when that estimate is small. Filtered lists, and SQLite, count exactly.
    """

    exact_below = 100_000
    # The filters the admin itself puts on every page of the list, not the operator's (repos.admin: the
    # rows of a repository being deleted are left out). A list filtered by these only still reads the
    # estimate, which counts those rows too until the background deletion is through: it is an estimate
    # either way, and an exact COUNT(*) of such a list would join millions of rows on every page.
    # Replaced per list (ModelAdmin.get_paginator), never changed in place.
    standing_filters: dict[str, Any] = {}

    @cached_property
    def count(self) -> int:
        estimate = _table_row_estimate(self.object_list, self.standing_filters)
        if estimate is None or estimate < self.exact_below:
            return super().count
        return estimate


def _unfiltered(queryset: QuerySet[Any], standing: dict[str, Any]) -> bool:
    where = queryset.query.where
    if not where:
        return True
    return bool(standing) and where == queryset.model._default_manager.filter(**standing).query.where


def _table_row_estimate(queryset: Any, standing: dict[str, Any] | None = None) -> int | None:
    if not isinstance(queryset, QuerySet) or not _unfiltered(queryset, standing or {}):
        return None
    table = queryset.model._meta.db_table
    connection = connections[queryset.db]
    if connection.vendor == "postgresql":
        sql, params = "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [table]
    elif connection.vendor == "mysql":
        sql = (
            "SELECT TABLE_ROWS FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
        )
        params = [table]
    else:
        return None
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    # PostgreSQL reports -1 for a table never analysed: count exactly then.
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Operators see who holds which token and revoke them; secrets exist only in the holder's hands.

    Tokens are created through the API (``POST /api/v1/tokens/``) or ``manage.py create_api_token``,
    which show the secret once.
    """

    list_display = [
        "prefix",
        "name",
        "user",
        "scope",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["prefix", "name", "user__username"]
    readonly_fields = ["user", "prefix", "scope", "created_at", "last_used_at", "revoked_at"]
    fields = ["user", "name", "prefix", "scope", "expires_at", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).", level=messages.SUCCESS)


def admin_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str) -> SafeString:
    """A read-only panel's table: ``headers`` and escaped cells, or ``empty`` when there is no row."""
    rows = list(rows)
    if not rows:
        return format_html("{}", empty)
    head = format_html_join("", "<th>{}</th>", ((header,) for header in headers))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows)
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)
