"""The estimated count of huge unfiltered admin lists comes from the database's statistics."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apm.admin import EstimatedCountPaginator
from repos.models import Commit
from tests.factories import CommitFactory, RepositoryFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_unfiltered_lists_use_the_statistics_and_filtered_lists_count_exactly():
    repository = RepositoryFactory()
    CommitFactory.create_batch(30, repository=repository)
    other = CommitFactory()
    with connection.cursor() as cursor:
        # Refresh the statistics the estimate reads (what autovacuum/InnoDB do on their own).
        cursor.execute(
            {"postgresql": "ANALYZE commits", "mysql": "ANALYZE TABLE commits"}.get(
                connection.vendor, "ANALYZE"
            )
        )
        if connection.vendor == "mysql":
            cursor.fetchall()

    everything = EstimatedCountPaginator(Commit.objects.order_by("-timestamp"), 50)
    everything.exact_below = 0  # treat the table as huge
    filtered = EstimatedCountPaginator(
        Commit.objects.filter(repository=other.repository).order_by("-timestamp"), 50
    )
    filtered.exact_below = 0

    if connection.vendor in {"postgresql", "mysql"}:
        assert everything.count == pytest.approx(31, abs=3)  # a statistic, not a count
    else:
        assert everything.count == 31  # SQLite has no cheap statistic: exact count
    assert filtered.count == 1


def test_the_admins_own_filter_still_reads_the_statistics_and_an_operators_filter_counts(
    admin_client, monkeypatch
):
    """The commit list leaves out the rows of a repository being deleted on every page (repos.admin):
    that standing filter alone must not turn each page of a huge table into a COUNT(*) with a join."""
    repository = RepositoryFactory()
    CommitFactory.create_batch(30, repository=repository)
    other = CommitFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            {"postgresql": "ANALYZE commits", "mysql": "ANALYZE TABLE commits"}.get(
                connection.vendor, "ANALYZE"
            )
        )
        if connection.vendor == "mysql":
            cursor.fetchall()
    monkeypatch.setattr(EstimatedCountPaginator, "exact_below", 0)  # treat the table as huge

    with CaptureQueriesContext(connection) as listed_queries:
        listed = admin_client.get("/admin/repos/commit/").context["cl"].paginator
    with CaptureQueriesContext(connection) as searched_queries:
        searched = admin_client.get("/admin/repos/commit/", {"q": other.sha}).context["cl"].paginator

    def counts(queries: CaptureQueriesContext) -> list[str]:
        return [query["sql"] for query in queries.captured_queries if "COUNT(" in query["sql"].upper()]

    assert listed.standing_filters == {"repository__deleting_since__isnull": True}
    if connection.vendor in {"postgresql", "mysql"}:
        assert counts(listed_queries) == []  # the statistic only
        assert listed.count == pytest.approx(31, abs=3)
    else:
        assert listed.count == 31  # SQLite has no cheap statistic: exact count
    assert searched.count == 1  # the operator's search: counted exactly
    assert len(counts(searched_queries)) == 1
