"""Pagination: numbered pages for bounded lists, cursors for the big history tables."""

from __future__ import annotations

from rest_framework import pagination


class PagePagination(pagination.PageNumberPagination):
    """Projects, tasks, repositories, runs, files: ``?page=2&page_size=100`` (at most 200)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class HistoryCursorPagination(pagination.CursorPagination):
    """Commits and file changes: opaque ``next``/``previous`` cursors and no ``COUNT(*)``.

    A page is one index range scan from the cursor's position, so page 10,000 costs what page 1 costs on a
    table of millions of rows. Views set ``ordering`` to an indexed column.
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
