"""Base classes of APM's API views."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet


class PageAttachMixin:
    """Add what each row shows from other tables, read once for the whole page (or the one object).

    Views name a ``page_attach(rows)`` that reads the extra data for all of ``rows`` in one query and
    sets it on them; lists and details then cost a fixed number of queries.
    """

    def page_attach(self, rows: list[Any]) -> None:
        raise NotImplementedError

    def paginate_queryset(self, queryset: QuerySet[Any]) -> list[Any] | None:
        page = super().paginate_queryset(queryset)  # type: ignore[misc]
        if page is not None:
            self.page_attach(page)
        return page

    def get_object(self) -> Any:
        instance = super().get_object()  # type: ignore[misc]
        self.page_attach([instance])
        return instance
