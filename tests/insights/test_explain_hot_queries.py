"""``manage.py explain_hot_queries``: the hot queries' plans on a generated slice pass, a missing index
fails naming it, the estimate rule on plans made by hand, and the refusal on other databases.

The generated runs fill a scratch database of this test process's own (the test database's name +
``_hot_queries``) and drop it; the test database is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from insights.hot_queries import estimate_problem, estimate_ratios
from insights.scale_slice import slice_task_parent

pytestmark = pytest.mark.django_db(transaction=True)

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) is PostgreSQL's"
)


def _scratch() -> str:
    return f"{connection.settings_dict['NAME']}_hot_queries"


def _scratch_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cursor.fetchone() is not None


@postgres_only
def test_the_small_generated_slice_passes_and_every_query_has_a_plan(tmp_path: Path, capsys: Any) -> None:
    test_database = connection.settings_dict["NAME"]
    with override_settings(APM_PERF_DIR=str(tmp_path / "perf")):
        call_command("explain_hot_queries", "--generate", "small", "--json", str(tmp_path / "out.json"))

    result = json.loads((tmp_path / "perf" / "hot-queries.json").read_text())
    assert result == json.loads((tmp_path / "out.json").read_text())
    assert result["passed"] is True
    assert result["database"]["vendor"] == "postgresql"
    assert result["database"]["name"] == _scratch()
    assert result["database"]["size_bytes"] > 0
    assert "finished_at" in result
    queries = {query["name"]: query for query in result["queries"]}
    # The hot selectors the issue names: lists, dashboards, analytics and ingestion's upserts.
    for name in [
        "commit page of a repository (50)",
        "hotspots of a repository by churn (50)",
        "changes of one file, newest 50",
        "commits of a task (50)",
        "file hotspots of a repository, 90 days",
        "latest commit of a repository",
    ]:
        assert name in queries, sorted(queries)
    for prefix in [
        "tasks of a project, first page (API)",
        "project summary",
        "portfolio",
        "project progress",
        "project health",
        "project charts, 90 days",
        "chunk: per-path totals upserted",
        "files refreshed from their histories",
        "chunk: which of",
    ]:
        assert any(name.startswith(prefix) for name in queries), prefix
    for query in queries.values():
        assert query["passed"], query
        assert not query["problems"], query
        assert query["plan"]["Plan"]["Node Type"], query["name"]
        assert query["execution_ms"] >= 0
        assert query["scans"], query["name"]
    # The upsert was explained as an INSERT, in a transaction rolled back.
    upsert = next(
        query for name, query in queries.items() if name.startswith("chunk: per-path totals upserted")
    )
    assert upsert["plan"]["Plan"]["Node Type"] == "ModifyTable"
    assert upsert["plan"]["Plan"]["Operation"] == "Insert"
    assert queries["latest commit of a repository"]["scans"] == ["Index Only Scan on idx_commits_repo_time"]
    output = capsys.readouterr().out
    assert "PASS  commit page of a repository (50)" in output
    assert "caller: GET /api/v1/commits/?repository=" in output
    assert f"all {len(queries)} hot queries passed" in output
    # The scratch database is gone, and the default connection is the test database's again.
    assert connection.settings_dict["NAME"] == test_database
    assert not _scratch_exists(_scratch())


@postgres_only
def test_a_dropped_index_fails_naming_the_table_and_the_index(tmp_path: Path) -> None:
    # The commit page of a repository needs idx_commits_repo_time: without it, PostgreSQL reads the
    # commits by time across all repositories or the whole table.
    name = _scratch()
    test_database = connection.settings_dict["NAME"]
    with override_settings(APM_PERF_DIR=str(tmp_path)):
        call_command("explain_hot_queries", "--generate", "small", "--keep")
    try:
        url = connection.settings_dict
        with psycopg.connect(
            host=url["HOST"] or None, port=url["PORT"] or None, user=url["USER"], dbname=name, autocommit=True
        ) as scratch:
            # The slice's subtasks: one task in eight, under a top-level task of its own project, each
            # with its history, so the progress rollup's subtask side reads real rows.
            trees = scratch.execute(
                "SELECT t.project_id, t.number, p.project_id, p.number, p.parent_id,"
                " (SELECT COUNT(*) FROM task_events e WHERE e.task_id = t.id)"
                " FROM tasks t LEFT JOIN tasks p ON p.id = t.parent_id ORDER BY t.project_id, t.number"
            ).fetchall()
            assert len(trees) == 200  # 2 projects of 100 tasks
            for project, number, parent_project, parent_number, grandparent, events in trees:
                assert parent_number == slice_task_parent(number), (number, parent_number)
                assert parent_project in (None, project)
                assert grandparent is None
                assert events >= 1
            assert sum(row[3] is not None for row in trees) == 24  # 12 subtasks a project
            scratch.execute("DROP INDEX idx_commits_repo_time")
        connection.close()
        cast("Any", connection).close_pool()
        connection.settings_dict["NAME"] = name
        try:
            with override_settings(APM_PERF_DIR=str(tmp_path)), pytest.raises(CommandError) as failed:
                call_command("explain_hot_queries")
        finally:
            connection.close()
            cast("Any", connection).close_pool()
            connection.settings_dict["NAME"] = test_database
    finally:
        with psycopg.connect(
            host=url["HOST"] or None,
            port=url["PORT"] or None,
            user=url["USER"],
            dbname="postgres",
            autocommit=True,
        ) as server:
            server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    message = str(failed.value)
    assert "hot queries failed" in message
    assert "latest commit of a repository: no Index Only Scan on idx_commits_repo_time" in message
    assert "commit page of a repository (50): idx_commits_repo_time not used" in message
    result = json.loads((tmp_path / "hot-queries.json").read_text())
    assert result["passed"] is False
    assert result["database"]["dataset"] == "current data"
    failed_names = {query["name"] for query in result["queries"] if not query["passed"]}
    assert "commit page of a repository (50)" in failed_names


def _node(kind: str, plan_rows: int, actual_rows: int, loops: Any = 1, **extra: Any) -> dict[str, Any]:
    return {
        "Node Type": kind,
        "Plan Rows": plan_rows,
        "Actual Rows": actual_rows,
        "Actual Loops": loops,
        **extra,
    }


def test_the_estimate_rule_on_plans_made_by_hand() -> None:
    # Off by 200x (an underestimate under a nested loop): named, with both figures.
    inner = _node("Index Scan", 5, 1000, loops=10, **{"Index Name": "idx_x", "Parent Relationship": "Inner"})
    plan = _node(
        "Nested Loop", 10, 10_000, Plans=[_node("Seq Scan", 10, 10, **{"Relation Name": "t"}), inner]
    )
    assert "Index Scan on idx_x: estimated 5 rows, 1,000 a loop (200x)" in estimate_problem(plan)
    assert "Nested Loop: estimated 10 rows, 10,000 a loop (1,000x)" in estimate_problem(plan)

    # Zero actual rows counts as one; 99x passes, 101x fails.
    assert estimate_problem(_node("Seq Scan", 99_000, 1000), min_rows=1) == ""
    assert "990x" in estimate_problem(_node("Seq Scan", 990, 0), min_rows=1)
    assert "101x" in estimate_problem(_node("Seq Scan", 101_000, 1000), min_rows=1)
    assert "101x" in estimate_problem(_node("Seq Scan", 1000, 101_000), min_rows=1)
    assert "101x" in estimate_problem(_node("Seq Scan", 0, 101), min_rows=1)

    # A node never executed (loops 0) has no actual rows: left out, whatever its estimate.
    never = _node("Index Scan", 1_000_000, 0, loops=0, **{"Index Name": "idx_never"})
    assert estimate_ratios(_node("Result", 1, 1, Plans=[never])) == [
        (1.0, _node("Result", 1, 1, Plans=[never]))
    ]
    assert estimate_problem(_node("Result", 1, 1, Plans=[never])) == ""

    # Under a Limit the scan stops early: fewer rows than estimated is by design, more is not.
    stopped = _node("Index Scan", 500_000, 50, **{"Index Name": "idx_page"})
    assert estimate_problem(_node("Limit", 50, 50, Plans=[stopped])) == ""
    overflow = _node("Index Scan", 5, 5000, **{"Index Name": "idx_page"})
    assert "idx_page" in estimate_problem(_node("Limit", 5, 50, Plans=[overflow]))
    # A Sort reads all its input even under a Limit: its input's overestimate counts again.
    sorted_input = _node("Seq Scan", 500_000, 1000, **{"Relation Name": "commits"})
    plan = _node("Limit", 50, 50, Plans=[_node("Sort", 500_000, 50, Plans=[sorted_input])])
    assert estimate_problem(plan) == "Seq Scan on commits: estimated 500,000 rows, 1,000 a loop (500x)"

    # Small counts change no plan: under 1,000 rows either way, any ratio passes by default.
    assert estimate_problem(_node("Bitmap Heap Scan", 340, 0, **{"Relation Name": "task_dependencies"})) == ""


@pytest.mark.skipif(connection.vendor == "postgresql", reason="the refusal is for the other databases")
def test_other_databases_are_refused_naming_postgresql() -> None:
    with pytest.raises(CommandError, match=r"needs PostgreSQL \(EXPLAIN \(ANALYZE, BUFFERS, FORMAT JSON\)\)"):
        call_command("explain_hot_queries", "--generate", "small")


def test_bad_options_are_refused_naming_the_option() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the vendor is checked first: the refusal above covers the other databases")
    with pytest.raises(CommandError, match="--fraction"):
        call_command("explain_hot_queries", "--fraction", "2")
    with pytest.raises(CommandError, match="--generate or --fraction, not both"):
        call_command("explain_hot_queries", "--fraction", "0.001", "--generate", "small")
    with pytest.raises(CommandError, match="--keep goes with --generate"):
        call_command("explain_hot_queries", "--keep")


@postgres_only
def test_a_results_file_that_cannot_be_written_is_refused_naming_it(tmp_path: Path, settings: Any) -> None:
    # Before any work for --json naming a directory; after it, for a place the results cannot go.
    with pytest.raises(CommandError, match=r"--json .* is a directory"):
        call_command("explain_hot_queries", "--generate", "small", "--json", str(tmp_path))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the results' directory should be")
    settings.APM_PERF_DIR = blocked / "perf"
    with pytest.raises(CommandError, match=f"cannot write the results to {blocked}"):
        call_command("explain_hot_queries", "--generate", "small")
