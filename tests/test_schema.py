"""The schema on the database under test carries the guide's tables, named indexes and constraints."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

GUIDE_INDEXES = {
    "idx_projects_status": ("projects", ["status"]),
    "idx_tasks_project_id": ("tasks", ["project_id"]),
    "idx_commits_timestamp": ("commits", ["timestamp"]),
    "idx_files_project_id": ("files", ["project_id"]),
}

UNIQUE_CONSTRAINTS = {
    "commit_repository_sha_unique": ("commits", ["repository_id", "sha"]),
    "task_project_number_unique": ("tasks", ["project_id", "number"]),
    "file_repository_path_unique": ("files", ["repository_id", "path"]),
    "membership_user_project_unique": ("project_memberships", ["user_id", "project_id"]),
    "commit_task_link_unique": ("commit_task_links", ["commit_id", "task_id"]),
}


def constraints_of(table: str) -> dict[str, dict]:
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, table)


def test_every_table_of_the_design_exists():
    tables = set(connection.introspection.table_names())

    assert {
        "projects", "project_memberships", "tasks", "task_events", "task_dependencies", "repositories",
        "commits", "files", "file_changes", "commit_task_links", "time_entries", "ingestion_runs",
    } <= tables  # fmt: skip


@pytest.mark.parametrize("name", sorted(GUIDE_INDEXES))
def test_the_guides_indexes_exist_with_their_names(name):
    table, columns = GUIDE_INDEXES[name]

    index = constraints_of(table)[name]

    assert index["index"] is True
    assert index["columns"] == columns


@pytest.mark.parametrize("name", sorted(UNIQUE_CONSTRAINTS))
def test_unique_constraints_exist(name):
    table, columns = UNIQUE_CONSTRAINTS[name]

    constraint = constraints_of(table)[name]

    assert constraint["unique"] is True
    assert constraint["columns"] == columns
