"""Filters shared by the API's lists."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms

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
