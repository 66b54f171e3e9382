"""Filters shared by the API's lists, and the backend that applies every list's filter set."""

from __future__ import annotations

import datetime
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django.http import HttpRequest
from django_filters import utils
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError

from apm.dates import DAY_RANGE_MESSAGE, MOMENT_RANGE_MESSAGE, day_in_range, moment_in_range

# The largest value a bigint id column holds; larger numbers would overflow the database's integer.
MAX_ID = 2**63 - 1


class IdFilter(django_filters.NumberFilter):
    """An id compared as a plain number (``?repository=12``).

    Unlike a model-choice filter it does not look the id up among all rows first, so an id of another
    project's object gives the same empty list as an id that does not exist: nothing leaks. Ids outside
    the column's range are a 400, not a database overflow.
    """

    field_class = forms.IntegerField  # type: ignore[assignment]  # the stubs allow DecimalField only

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


def _day_error(value: Any) -> str | None:
    """Why a cleaned filter value lies outside the days APM accepts, or None."""
    if isinstance(value, datetime.datetime):
        return None if moment_in_range(value) else MOMENT_RANGE_MESSAGE
    if isinstance(value, datetime.date):
        return None if day_in_range(value) else DAY_RANGE_MESSAGE
    if isinstance(value, slice):  # a range filter's (start, stop)
        return _day_error(value.start) or _day_error(value.stop)
    if isinstance(value, list | tuple):
        return next((error for error in map(_day_error, value) if error is not None), None)
    return None


def _in_utc(value: Any) -> Any:
    """A cleaned filter value with its times moved to UTC (ranges and lists too).

    PostgreSQL takes UTC offsets up to 15:59 only, and ISO 8601 allows 23:59: ``since=...-23:59`` was a
    valid time the database refused (a 500). The same moment in UTC is what the column is compared with.
    """
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.UTC)
    if isinstance(value, slice):
        return slice(_in_utc(value.start), _in_utc(value.stop), value.step)
    if isinstance(value, list | tuple):
        return type(value)(map(_in_utc, value))
    return value


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, with date and time filters bounded to the days APM accepts.

    A valid ISO time such as ``9999-12-31T23:59:59-23:59`` lies past year 9999 in UTC, where the database
    (and Python) cannot follow: a 400 naming the parameter, on every list, whatever its filter set.
    """

    def filter_queryset(self, request: HttpRequest, queryset: QuerySet[Any], view: Any) -> QuerySet[Any]:
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            # The stubs say a dict; it is DRF's ValidationError, as django-filter's own backend raises it.
            raise utils.translate_validation(filterset.errors)  # type: ignore[misc]
        errors = {
            name: [error]
            for name, value in filterset.form.cleaned_data.items()
            if (error := _day_error(value)) is not None
        }
        if errors:
            raise ValidationError(errors)
        cleaned = filterset.form.cleaned_data
        for name, value in cleaned.items():
            cleaned[name] = _in_utc(value)
        return filterset.qs
