"""Base serializers of APM's API."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, ClassVar

from rest_framework import serializers

from apm.dates import DAY_RANGE_MESSAGE, day_in_range

# Sent by the browsable API's HTML forms; never a field of ours.
_FORM_FIELDS = frozenset({"csrfmiddlewaretoken", "_method", "_content_type", "_content"})


# Comments, not docstrings, on these bases: drf-spectacular would publish a docstring as the description
# of every serializer without one of its own.


# Refuse fields the client may not write, instead of silently ignoring them. A client that sends
# ``"status": "done"`` in a task update learns that status changes through its own route, rather than
# believing the task was closed. ``read_only_hints`` says where such a field is changed.
class StrictSerializerMixin:
    read_only_hints: ClassVar[dict[str, str]] = {}
    fields: Any

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            refused = sorted(set(data) - writable - _FORM_FIELDS)
            if refused:
                raise serializers.ValidationError(
                    {name: [self._refusal(name)] for name in refused}, code="read_only"
                )
        return super().to_internal_value(data)  # type: ignore[misc]

    def _refusal(self, name: str) -> str:
        if name in self.read_only_hints:
            return self.read_only_hints[name]
        if name in self.fields:
            return "This field is read-only."
        return "Unknown field."


# ``Meta.read_only_fields`` also covers the fields a serializer declares itself. DRF applies it to
# generated fields only, so an update serializer that inherits a declared related field
# (``project = ProjectKeyField()``) would otherwise keep it writable.
#
# A model's date field is a ``DayField``: the database stores year 1 and 9999, APM plans between 1900 and
# 2999 (apm.dates), and a day outside is a 400 on its field, not a period that overflows later.
class StrictModelSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for name in getattr(self.Meta, "read_only_fields", ()):
            if name in fields:
                fields[name].read_only = True
        return fields

    def build_standard_field(
        self, field_name: str, model_field: Any
    ) -> tuple[type[serializers.Field], dict[str, Any]]:
        field_class, field_kwargs = super().build_standard_field(field_name, model_field)
        if field_class is serializers.DateField:
            field_class = DayField
        return field_class, field_kwargs


class StrictSerializer(StrictSerializerMixin, serializers.Serializer):
    pass


class BlankAsNullChoiceField(serializers.ChoiceField):
    """A read-only choice that is blank until something sets it, shown as null (no empty enum value)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, read_only=True, **kwargs)

    def to_representation(self, value: str) -> str | None:  # type: ignore[override]  # null: the point
        return value or None


class DayField(serializers.DateField):
    """A day given as YYYY-MM-DD, between 1900-01-01 and 2999-12-31 (apm.dates)."""

    def to_internal_value(self, value: Any) -> datetime.date:
        day = super().to_internal_value(value)
        if not day_in_range(day):
            raise serializers.ValidationError(DAY_RANGE_MESSAGE)
        return day
