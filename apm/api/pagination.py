"""Pagination: numbered pages for bounded lists, cursors for the big history tables."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Field, Model, QuerySet
from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request

from apm.api.filters import MAX_ID
from apm.dates import day_in_range, moment_in_range


class PagePagination(pagination.PageNumberPagination):
    """Projects, tasks, repositories, runs, files: ``?page=2&page_size=100`` (at most 200)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class HistoryCursorPagination(pagination.CursorPagination):
    """Commits and file changes: opaque ``next``/``previous`` cursors and no ``COUNT(*)``.

    A page is one index range scan from the cursor's position, so page 10,000 costs what page 1 costs on a
    table of millions of rows. Views set ``ordering`` to an indexed column.

    A cursor is only base64 of ``o``, ``r`` and ``p`` (offset, reverse, position), so a client can write
    one by hand. DRF checks the first two; the position is checked here against the ordering column: one
    that column cannot hold (``p=notadate`` on a time, a time past year 9999 in UTC, an id past the
    bigint range) is refused like a cursor that is not base64 at all. Every refused cursor is a 400 on
    the ``cursor`` parameter (DRF answers 404, as if the page did not exist; the request is what is wrong).
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    _model: type[Model] | None = None

    def paginate_queryset(
        self, queryset: QuerySet[Any, Any] | Sequence[Any], request: Request, view: Any | None = None
    ) -> list[Any] | None:
        self._model = getattr(queryset, "model", None)
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise self._cursor_refused() from None
        if (
            cursor is not None
            and cursor.position is not None
            and not self._position_valid(str(cursor.position))
        ):
            raise self._cursor_refused()
        return cursor

    def _cursor_refused(self) -> ValidationError:
        return ValidationError({self.cursor_query_param: [self.invalid_cursor_message]})

    def _position_valid(self, position: str) -> bool:
        if self._model is None:
            return True
        if "\x00" in position:
            return False
        try:
            field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
        except FieldDoesNotExist:
            return True  # an ordering across a relation: its column is not checked here
        if not isinstance(field, Field):
            return True  # a reverse relation: not a column either
        try:
            value = field.to_python(position)
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            return False
        return value is not None and _value_in_range(value)


def _value_in_range(value: Any) -> bool:
    """Whether the database can compare its column with ``value`` (a time, a day, an id)."""
    if isinstance(value, datetime.datetime):
        # PostgreSQL refuses UTC offsets of 16 hours or more, which ISO 8601 allows; APM's own cursors
        # carry the times it stored, so such a position was made by hand.
        offset = value.utcoffset()
        return moment_in_range(value) and (offset is None or abs(offset) < datetime.timedelta(hours=16))
    if isinstance(value, datetime.date):
        return day_in_range(value)
    if isinstance(value, int):
        return -MAX_ID - 1 <= value <= MAX_ID
    return True
