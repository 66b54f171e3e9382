"""Helpers for driving the Django admin's HTTP views in tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.db import connection
from django.db.models import Model
from django.forms.formsets import BaseFormSet
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext


def _field_value(bound_field: forms.BoundField) -> str | list[str] | None:
    """What a browser would submit for ``bound_field``: ``None`` means the key is left out (unchecked box)."""
    value = bound_field.value()
    if isinstance(bound_field.field.widget, forms.CheckboxInput):
        return "on" if value else None
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return str(value)


def _form_data(form: forms.BaseForm) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in form.fields:
        value = _field_value(form[name])
        if value is not None:
            data[form.add_prefix(name)] = value
    return data


def admin_form_data(response: HttpResponse, **overrides: Any) -> dict[str, Any]:
    """The POST data of the admin add/change form rendered in ``response``, as the page shows it.

    Covers the main form, every inline form (with its current values) and each inline formset's
    management form, so posting it back unchanged saves nothing new. ``overrides`` replace or add
    fields by their full (prefixed) name, e.g. ``status="done"`` or ``**{"memberships-0-role": "member"}``;
    an override of ``None`` removes the field (an unchecked checkbox).
    """
    context = response.context
    data = _form_data(context["adminform"].form)
    for inline_admin_formset in context["inline_admin_formsets"]:
        formset = inline_admin_formset.formset
        data.update(_form_data(formset.management_form))
        for form in formset.forms:
            data.update(_form_data(form))
    for name, value in overrides.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def inline_formset(response: HttpResponse, model: type[Model]) -> BaseFormSet:
    """The inline formset for ``model`` in the admin page in ``response``: its prefix, forms and errors."""
    for inline_admin_formset in response.context["inline_admin_formsets"]:
        if inline_admin_formset.formset.model is model:
            return inline_admin_formset.formset
    raise LookupError(f"no inline for {model.__name__} on this page")


def changelist_query_count(client: Client, url: str, *, rows: int) -> int:
    """The number of queries of one GET of the changelist at ``url``, which must show ``rows`` rows."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == rows
    return len(queries)


def assert_changelist_queries_fixed(
    client: Client,
    assert_num_queries: Callable[..., Any],
    url: str,
    add_rows: Callable[[int], None],
    expected: int,
) -> None:
    """The changelist at ``url`` runs ``expected`` queries, with 1 row and with 50 rows alike."""
    add_rows(1)
    with_one_row = changelist_query_count(client, url, rows=1)
    add_rows(49)
    with_fifty_rows = changelist_query_count(client, url, rows=50)

    assert with_one_row == with_fifty_rows
    with assert_num_queries(expected):
        client.get(url)
