"""benchmarks/scale.py on its quick slice: the figures docs/scale.md is built from are all there, the hot
queries' plans use the indexes the benchmark claims, and a second run measures what the first did.

The benchmark itself is run by hand at 1/1000 (docs/scale.md); here it runs at 1/20,000 (5,000 commits,
50,000 file changes) in a scratch PostgreSQL database of this test's own, whatever database the suite's
leg runs on: the benchmark measures PostgreSQL only, and says so when given another database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import require_service
from tests.isolation import namespace
from tests.processes import ROOT

SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
SCRIPT = ROOT / "benchmarks" / "scale.py"


def _scale(*arguments: str) -> subprocess.CompletedProcess[str]:
    # The benchmark configures Django itself; the suite's own settings must not leak into it.
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "DATABASE_", "CELERY_", "REDIS_"))
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _run(tmp_path: Path, name: str, database: str, *extra: str) -> tuple[str, dict[str, Any]]:
    output = tmp_path / f"{name}.json"
    url = f"postgres://postgres@127.0.0.1:5432/{database}"
    process = _scale("--quick", "--database-url", url, "--json", str(output), *extra)
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-4000:]
    return process.stdout, json.loads(output.read_text())


def _database_exists(name: str) -> bool:
    with psycopg.connect(SERVER, autocommit=True) as server:
        return server.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def test_the_quick_slice_measures_every_figure_and_a_second_run_measures_the_same(tmp_path: Path) -> None:
    require_service(SERVER)
    database = f"apm_scale_{namespace()}".replace("-", "_")
    stdout, first = _run(tmp_path, "first", database, "--ingest")

    # The slice: 2 repositories x 2,500 commits, 10 file changes a commit on average.
    assert first["slice"]["commits"] == 5000
    rows = {step["table"]: step["rows"] for step in first["fill"]}
    assert rows["commits"] == 5000
    assert rows["file_changes"] == 50_000
    assert rows["commit_task_links"] == 5000  # every message names a task of its project
    assert 0 < rows["files"] < rows["file_histories"]
    assert all(step["wal_bytes"] > 0 for step in first["fill"])

    # Bytes per row, within what rows of these shapes can take (a commit's sha, parents and message
    # alone are over 150 bytes; a file change is a 24-byte row header and a path of about 33).
    tables = first["tables"]
    assert 200 < tables["commits"]["heap_per_row"] < 800
    assert 60 < tables["file_changes"]["heap_per_row"] < 300
    assert 25 < first["path_bytes"] < 60
    for table, figures in tables.items():
        assert figures["indexes_per_row"] > 0, table
        for index, index_figures in figures["indexes"].items():
            assert index_figures["per_row"] > 0, index
            assert index_figures["packed_per_row"] > 0, index

    # Every claim holds, and the index-only ones read no heap once vacuumed.
    queries = {query["name"]: query for query in first["queries"]}
    assert all(query["ok"] for query in queries.values()), [q for q in queries.values() if not q["ok"]]
    index_only = [query for query in queries.values() if query["expect"] == "index-only"]
    # Five on commits and file changes, one on task_events (the portfolio's closings).
    assert len(index_only) == 6
    for query in index_only:
        assert any(node.startswith("Index Only Scan on") for node in query["nodes"]), query
        assert query["heap_fetches"] == 0, query
        # Before VACUUM the visibility map vouches for no page: each row the index finds is read from
        # the heap again (heap fetches), or the planner reads the heap in the first place.
        before = query["unvacuumed_nodes"]
        assert query["heap_fetches_unvacuumed"] or not any(node.startswith("Index Only") for node in before)
    counted = queries["changes of one file, counted"]
    assert counted["heap_fetches_unvacuumed"] > 0, counted  # 30-odd changes of the busiest file
    assert "Index Only Scan on idx_file_changes_repo_path" in queries["changes of one file, counted"]["nodes"]
    assert queries["latest commit of a repository"]["nodes"] == ["Index Only Scan on idx_commits_repo_time"]
    for query in queries.values():
        assert query["median_ms"] > 0
        # No big table read from end to end (a few repositories' rows may be, at this size).
        assert not {f"Seq Scan on {table}" for table in tables} & set(query["claim_nodes"]), query

    # The ingest rate of one worker through the real pipeline, and what it wrote.
    ingest = first["ingest"]
    assert ingest["workers"] == 1
    assert ingest["commits"] == 500
    assert ingest["file_changes"] > 4000
    assert ingest["sizes"]["file_changes"] > 0

    # The projection: every figure present and consistent with the others.
    full = first["projection"]
    assert full["scale"] == 20_000
    assert full["tables"]["file_changes"]["rows"] == 1_000_000_000
    assert full["tables"]["commits"]["rows"] == 100_000_000
    assert full["disk_bytes"] > full["needed_bytes"] > full["data_bytes"] + full["index_bytes"]
    assert full["ram_bytes"] >= full["hot_bytes"] > 0
    assert full["shared_buffers_bytes"] == full["ram_bytes"] / 4
    assert full["workers"] >= 1
    assert full["workers_for"]["4.0"] >= full["workers_for"]["24.0"] >= 1
    assert full["connections"] > full["connections_ingest"] > 0
    for section in ("(1) fill", "(2) bytes per row", "(3) hot queries", "(4) ingest rate", "(5) projection"):
        assert section in stdout
    assert "FAILED" not in stdout
    assert not _database_exists(database)  # the scratch database is dropped

    # A second run (without --ingest, which runs first into tables it empties) writes the same slice.
    _, second = _run(tmp_path, "second", database)
    assert {step["table"]: step["rows"] for step in second["fill"]} == rows
    for table, figures in tables.items():
        assert second["tables"][table]["rows"] == figures["rows"]
        assert second["tables"][table]["heap_per_row"] == figures["heap_per_row"], table
    assert second["path_bytes"] == first["path_bytes"]
    assert second["ingest"]["source"].startswith("docs/performance.md")
    assert not _database_exists(database)


def test_another_database_is_refused_with_the_reason() -> None:
    process = _scale("--quick", "--database-url", "sqlite:///scale.sqlite3")

    assert process.returncode != 0
    assert "give a postgres:// --database-url" in process.stderr
    assert not (ROOT / "scale.sqlite3").exists()


def test_options_out_of_range_are_refused_before_anything_is_created() -> None:
    # Port 1: nothing listens there, so a refusal that came after connecting would say so instead.
    nowhere = ["--database-url", "postgres://postgres@127.0.0.1:1/nothing"]
    for arguments, option in [
        (["--fraction", "0"], "--fraction"),
        (["--fraction", "1.5"], "--fraction"),
        (["--fraction", "0.000001"], "--fraction"),
        (["--files-per-repository", "10"], "--files-per-repository"),
        (["--ingest-commits", "0"], "--ingest-commits"),
        (["--reingest-hours", "0"], "--reingest-hours"),
        (["--repeat", "0"], "--repeat"),
    ]:
        process = _scale(*arguments, *nowhere)

        assert process.returncode != 0, arguments
        assert option in process.stderr, (arguments, process.stderr)
        assert "Traceback" not in process.stderr


def test_a_database_it_did_not_create_is_never_dropped() -> None:
    require_service(SERVER)
    database = f"apm_scale_theirs_{namespace()}".replace("-", "_")
    with psycopg.connect(SERVER, autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{database}"')
        server.execute(f'CREATE DATABASE "{database}"')
    try:
        with psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{database}", autocommit=True) as theirs:
            theirs.execute("CREATE TABLE projects (name text)")
            theirs.execute("INSERT INTO projects VALUES ('theirs')")

        process = _scale("--quick", "--database-url", f"postgres://postgres@127.0.0.1:5432/{database}")

        assert process.returncode != 0
        assert f"database {database} exists and was not created by benchmarks/scale.py" in process.stderr
        with psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{database}") as theirs:
            assert theirs.execute("SELECT name FROM projects").fetchall() == [("theirs",)]
    finally:
        with psycopg.connect(SERVER, autocommit=True) as server:
            server.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_a_second_run_on_the_same_database_stops_instead_of_dropping_the_first_runs() -> None:
    require_service(SERVER)
    database = f"apm_scale_busy_{namespace()}".replace("-", "_")
    url = f"postgres://postgres@127.0.0.1:5432/{database}"
    with psycopg.connect(SERVER, autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{database}"')
        server.execute(f'CREATE DATABASE "{database}"')
        # As the first run left it: its own scratch database, its claim held for as long as it runs.
        server.execute(f"COMMENT ON DATABASE \"{database}\" IS 'scratch database of benchmarks/scale.py'")
    try:
        with psycopg.connect(SERVER, autocommit=True) as first:
            first.execute(
                "SELECT pg_advisory_lock(hashtext('benchmarks/scale.py'), hashtext(%s))", [database]
            )
            with psycopg.connect(url, autocommit=True) as running:
                running.execute("CREATE TABLE measured (n int)")

                process = _scale("--quick", "--database-url", url)

                assert process.returncode != 0
                assert f"another run of benchmarks/scale.py is using database {database}" in process.stderr
                assert running.execute("SELECT count(*) FROM measured").fetchone() == (0,)
    finally:
        with psycopg.connect(SERVER, autocommit=True) as server:
            server.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
