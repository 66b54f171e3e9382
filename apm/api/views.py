"""Base classes of APM's API views."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet

if TYPE_CHECKING:
    # For the type checker the mixin is a generic API view (its super() calls go there); at run time it
    # is a plain mixin, the view it is mixed into brings the rest.
    from rest_framework.generics import GenericAPIView

    _ViewBase = GenericAPIView[Any]
else:
    _ViewBase = object


class PageAttachMixin(_ViewBase):
    """Add what each row shows from other tables, read once for the whole page (or the one object).

    Views name a ``page_attach(rows)`` that reads the extra data for all of ``rows`` in one query and
    sets it on them; lists and details then cost a fixed number of queries.
    """

    def page_attach(self, rows: list[Any]) -> None:
        raise NotImplementedError

    def paginate_queryset(self, queryset: QuerySet[Any, Any] | Sequence[Any]) -> list[Any] | None:
        page = super().paginate_queryset(queryset)
        if page is not None:
            self.page_attach(page)
        return page

    def get_object(self) -> Any:
        instance = super().get_object()
        self.page_attach([instance])
        return instance
