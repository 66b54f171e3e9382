"""The estimated count of huge unfiltered admin lists comes from the database's statistics."""

from __future__ import annotations

import pytest
from django.db import connection

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
