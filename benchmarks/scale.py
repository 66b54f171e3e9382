"""The plan for the big case, measured on a slice: 10,000 repositories, 100 million commits, 1 billion
file changes, scaled down by ``--fraction`` and projected back up.

    .venv/bin/python benchmarks/scale.py              # 1/1000: 10 repositories, 100,000 commits
    .venv/bin/python benchmarks/scale.py --ingest     # and the ingest rate of one worker, measured
    .venv/bin/python benchmarks/scale.py --fraction 0.01          # 1/100: 100 repositories, 10M file changes
    .venv/bin/python benchmarks/scale.py --quick --json out.json  # 1/20,000, seconds: what the test runs

PostgreSQL only: the slice is written by PostgreSQL itself and measured with its own size functions and
``EXPLAIN (ANALYZE, BUFFERS)``. A scratch database (``apm_bench_scale`` unless ``--database-url`` names
another) is dropped, created and migrated, and dropped again at the end unless ``--keep``.

How the slice is made: rows shaped like ingested ones (40-hex shas, a parent each, a message of about
115 bytes naming a task, paths of about 33 bytes, ten file changes a commit, a link a commit) are
inserted by ``INSERT ... SELECT FROM generate_series``, repository by repository, newest commit first
as ingestion writes them, into the migrated tables with every index in place, so indexes grow by
insertion as they do under ingestion (not packed by CREATE INDEX). Real ingestion of 100,000 commits
would measure git and the parser again; their rate is what ``--ingest`` measures, through the real
pipeline on a generated git history, and the sizes of what it wrote are printed beside the slice's.

Printed, in one run:
  (1) the fill: seconds and WAL bytes per row of each table (EXPLAIN (ANALYZE, WAL) of each INSERT);
  (2) each table's heap, TOAST and indexes in bytes per row; each index's bytes per row as inserted and
      after REINDEX, its B-tree depth and leaf density (pgstattuple, when it can be installed);
  (3) the hot queries' plans: each must use the named index (index-only where claimed, with its heap
      fetches, before and after VACUUM), times at the slice's size; a claim not met exits 1. Queries
      marked * read one repository's or one chunk's rows, a share of the slice's table 1/fraction times
      larger than at full size: their claim is checked on the plan without sequential scans;
  (4) the ingest rate per worker (measured with ``--ingest``, quoted from docs/performance.md without);
  (5) the projection to the full size: disk, memory, workers for a re-ingest in ``--reingest-hours``,
      WAL rate and connections.
docs/scale.md explains the figures and what comes after one PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import database_reset  # noqa: E402
from benchmarks.measure import median_ms  # noqa: E402

if TYPE_CHECKING:
    from insights.hot_queries import HotQuery
from insights.scale_slice import (  # noqa: E402
    CHANGES_PER_COMMIT,
    CHUNK_COMMITS,
    FULL_COMMITS,
    FULL_REPOSITORIES,
    HISTORY_DAYS,
    QUICK_SLICE,
    SETTLED_TABLES,
    TABLES,
    FillStep,
    Slice,
    scalar,
    slice_fill,
    slice_of_fraction,
)

# Quoted when --ingest is not given: docs/performance.md, "Ingestion against git itself", 2026-12-01,
# generated 100,000 commits, 402,711 file changes in 11.76 s with two threads on two cores.
QUOTED_INGEST = {
    "commits": 100_000,
    "file_changes": 402_711,
    "seconds": 11.76,
    "workers": 2,
    "source": "docs/performance.md (100,000 generated commits, 2 threads on 2 cores, 2026-12-01)",
}

# The rate on a real history, where git computing the diffs sets the pace: docs/performance.md, git/git,
# 81,966 commits, 136,004 file changes in 22.26 s with two threads on two cores. The projection plans
# with whichever of the two rates asks for more workers.
GIT_BOUND_INGEST = {
    "commits": 81_966,
    "file_changes": 136_004,
    "seconds": 22.26,
    "workers": 2,
    "source": "docs/performance.md (git/git, 2 threads on 2 cores, 2026-12-01)",
}

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/apm_bench_scale"
GIB = 1024**3


def slice_of(options: argparse.Namespace) -> Slice:
    """The slice ``--fraction`` (or ``--quick``) asks for, at full size's shape: 10,000 commits a
    repository, 10 file changes a commit."""
    if options.quick:
        return QUICK_SLICE
    fraction = options.fraction
    if not 0 < fraction <= 1:
        sys.exit(f"--fraction must be more than 0 and at most 1, not {fraction}")
    commits = round(FULL_COMMITS * fraction)
    if commits < 1000:
        sys.exit(f"--fraction {fraction} leaves {commits} commits: give at least 1/100,000 (0.00001)")
    return slice_of_fraction(fraction, files_each=options.files_per_repository)


def options_check(options: argparse.Namespace) -> None:
    """Stop with the option at fault before anything is created."""
    # A wide commit changes 20 distinct paths at a stride of up to 3: fewer than 60 paths would repeat.
    if options.files_per_repository < 100:
        sys.exit(f"--files-per-repository must be at least 100, not {options.files_per_repository}")
    if options.ingest_commits is not None and options.ingest_commits < 10:
        sys.exit(f"--ingest-commits must be at least 10, not {options.ingest_commits}")
    if options.reingest_hours <= 0:
        sys.exit(f"--reingest-hours must be more than 0, not {options.reingest_hours}")
    if options.repeat is not None and options.repeat < 1:
        sys.exit(f"--repeat must be at least 1, not {options.repeat}")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fraction", type=float, default=0.001, help="Share of the full size (0.001).")
    parser.add_argument("--quick", action="store_true", help="A 1/20,000 slice of 5,000 commits.")
    parser.add_argument(
        "--files-per-repository", type=int, default=5000, help="Files in each tree at its tip (5,000)."
    )
    parser.add_argument("--ingest", action="store_true", help="Measure the ingest rate of one worker.")
    parser.add_argument(
        "--ingest-commits", type=int, default=None, help="Commits of the ingested history (20,000)."
    )
    parser.add_argument("--reingest-hours", type=float, default=24.0, help="Re-ingest everything in (24).")
    parser.add_argument("--repeat", type=int, default=None, help="Timed runs per query (median; 9).")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--keep", action="store_true", help="Keep the scratch database.")
    parser.add_argument("--json", type=Path, help="Also write every figure to this file.")
    return parser.parse_args()


# --------------------------------------------------------------------------------------------- sizes


@dataclass
class IndexSize:
    name: str
    table: str
    bytes: int
    bytes_packed: int = 0
    level: int | None = None
    leaf_density: float | None = None


@dataclass
class TableSize:
    table: str
    rows: int
    heap: int  # main fork
    toast: int  # TOAST table and its index, free space and visibility maps
    indexes: int
    index_sizes: list[IndexSize] = field(default_factory=list)

    def per_row(self, value: int) -> float:
        return value / self.rows if self.rows else 0.0


def sizes_measure() -> dict[str, TableSize]:
    from django.db import connection

    stats = pgstattuple_ready()
    sizes = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(
                "SELECT (SELECT COUNT(*) FROM " + table + "), pg_relation_size(%s::regclass), "  # noqa: S608
                "pg_table_size(%s::regclass) - pg_relation_size(%s::regclass), pg_indexes_size(%s::regclass)",
                [table] * 4,
            )
            rows, heap, toast, indexes = cursor.fetchone()
            cursor.execute(
                "SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid) FROM pg_index i "
                "WHERE i.indrelid = %s::regclass ORDER BY 1",
                [table],
            )
            index_sizes = [IndexSize(name, table, size) for name, size in cursor.fetchall()]
            for index in index_sizes:
                if stats:
                    cursor.execute(
                        "SELECT tree_level, avg_leaf_density FROM pgstatindex(%s::regclass)", [index.name]
                    )
                    index.level, index.leaf_density = cursor.fetchone()
            sizes[table] = TableSize(table, rows, heap, toast, indexes, index_sizes)
    return sizes


def pgstattuple_ready() -> bool:
    """Whether pgstatindex can be called (the contrib extension, installed by a superuser)."""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        return True
    except Exception:  # not installed, or not a superuser: the figures are optional
        return False


def packed_sizes_measure(sizes: dict[str, TableSize]) -> None:
    """Each index's size once rebuilt (REINDEX): the floor of what it can take, against what insertion
    one row at a time leaves (page splits leave pages part empty)."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table, size in sizes.items():
            cursor.execute(f"REINDEX TABLE {table}")
            for index in size.index_sizes:
                cursor.execute("SELECT pg_relation_size(%s::regclass)", [index.name])
                index.bytes_packed = cursor.fetchone()[0]


# ------------------------------------------------------------------------------------------- queries


@dataclass
class QueryFigures:
    name: str
    caller: str
    expect: str
    indexes: list[str]
    joined: list[str]
    share_bound: bool
    nodes: list[str]  # the scans of the plan chosen at the slice's size
    claim_nodes: list[str]  # the scans of the plan the claim was checked on
    ok: bool
    problem: str
    heap_fetches: int | None
    heap_fetches_unvacuumed: int | None
    unvacuumed_nodes: list[str]  # the plan before VACUUM (index-only claims only)
    rows: int
    buffers: int
    execution_ms: float
    claim_execution_ms: float
    median_ms: float


def hot_queries(repository_ids: list[int], size: Slice) -> list[HotQuery]:
    """The hot queries (insights.hot_queries, what manage.py explain_hot_queries checks), asked about the
    middle repository, with a chunk of at most a fiftieth of the slice."""
    from insights.hot_queries import hot_queries as product_hot_queries
    from insights.hot_queries import sample_pick
    from repos.models import Repository

    repository = Repository.objects.get(pk=repository_ids[len(repository_ids) // 2])
    sample = sample_pick(repository=repository, chunk_size=min(CHUNK_COMMITS, size.commits // 50))
    return product_hot_queries(sample)


def heap_fetches_of(explained: dict[str, Any], indexes: tuple[str, ...]) -> int | None:
    from insights.hot_queries import plan_nodes

    fetches = [
        node.get("Heap Fetches", 0)
        for node in plan_nodes(explained["Plan"])
        if node["Node Type"] == "Index Only Scan" and node.get("Index Name") in indexes
    ]
    return sum(fetches) if fetches else None


def query_measure(query: HotQuery, repeat: int, unvacuumed: dict[str, Any] | None) -> QueryFigures:
    """The plan of ``query`` against its claim, and its median time at the slice's size."""
    from django.db import connection, transaction

    from insights.hot_queries import plan_nodes, query_check, query_explain, scans_of

    explained = query_explain(query)
    claimed = query_explain(query, seqscan=False) if query.share_bound else explained
    # The rules of manage.py explain_hot_queries: seq scans, the claimed indexes, the row estimates.
    check = query_check(query, explained=explained, claimed=claimed)
    problem = "; ".join(check.problems)

    def run() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(query.sql, query.params)
            if cursor.description is not None:
                cursor.fetchall()
            transaction.set_rollback(True)  # the upserts change nothing

    return QueryFigures(
        name=query.name,
        caller=query.caller,
        expect=query.expect,
        indexes=list(query.indexes),
        joined=list(query.joined),
        share_bound=query.share_bound,
        nodes=check.scans,
        claim_nodes=check.claim_scans,
        ok=not problem,
        problem=problem,
        heap_fetches=heap_fetches_of(explained, query.indexes),
        heap_fetches_unvacuumed=None if unvacuumed is None else heap_fetches_of(unvacuumed, query.indexes),
        unvacuumed_nodes=[] if unvacuumed is None else scans_of(list(plan_nodes(unvacuumed["Plan"]))),
        rows=check.rows,
        buffers=check.buffers,
        execution_ms=check.execution_ms,
        claim_execution_ms=float(claimed["Execution Time"]),
        median_ms=median_ms(run, repeat),
    )


# -------------------------------------------------------------------------------------------- ingest


def ingest_measure(commits: int, workdir: Path) -> dict[str, Any]:
    """One worker's rate: the real pipeline (APM_INGEST_THREADS=1, in this process) on a generated
    history of ``commits`` commits changing ten files each; sizes of what it wrote, per row."""
    from django.db import transaction

    from benchmarks.ingest import steps_text
    from benchmarks.repogen import history_stream, repository_create
    from projects.models import Project
    from repos.models import IngestionRun
    from repos.services import ingestion_request, repository_register
    from tasks.models import Task

    repo = repository_create(
        workdir / "history",
        history_stream(commits=commits, files=5000, touched=CHANGES_PER_COMMIT, initial_files=500),
    )
    project = Project.objects.create(name="Ingest rate", key="APM")  # the generated messages name APM-N
    Task.objects.bulk_create(Task(project=project, number=n, title=f"Task {n}") for n in range(1, 501))
    Project.objects.filter(pk=project.pk).update(last_task_number=500)
    repository = repository_register(project=project, source=str(repo))
    started = time.perf_counter()
    with transaction.atomic():
        request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND)
    seconds = time.perf_counter() - started
    run = IngestionRun.objects.get(pk=request.run.pk)
    if run.status != IngestionRun.Status.SUCCEEDED:
        sys.exit(f"the ingestion of the generated history failed: {run.error}")
    return {
        "commits": run.commits_added,
        "file_changes": run.file_changes_added,
        "seconds": seconds,
        "workers": 1,
        "steps": steps_text(run.timings),
        "source": f"measured: --ingest, {run.commits_added:,} generated commits, one worker",
    }


# ---------------------------------------------------------------------------------------- projection


def projection(
    *,
    size: Slice,
    sizes: dict[str, TableSize],
    fill: list[FillStep],
    queries: list[QueryFigures],
    ingest: dict[str, Any],
    hours: float,
) -> dict[str, Any]:
    """Disk, memory, workers, WAL and connections at the full size, from the slice's figures."""
    scale = 1 / size.fraction
    tables = {}
    for table, measured in sizes.items():
        rows = measured.rows * scale
        tables[table] = {
            "rows": rows,
            "heap_bytes": (measured.heap + measured.toast) * scale,
            "index_bytes": measured.indexes * scale,
            "index_bytes_packed": sum(i.bytes_packed for i in measured.index_sizes) * scale,
        }
    data = sum(t["heap_bytes"] for t in tables.values())
    indexes = sum(t["index_bytes"] for t in tables.values())
    largest_index = max(i.bytes for m in sizes.values() for i in m.index_sizes) * scale
    largest_table = max(m.heap + m.toast + m.indexes for m in sizes.values()) * scale
    # Dead rows between vacuums and updated rows (files and file_histories are rewritten by every run
    # that touches them): autovacuum at a 2% scale factor keeps tables within about a tenth of their
    # packed size; 20% is the allowance.
    bloat = 0.2 * (data + indexes)
    wal = 64 * GIB  # max_wal_size for a bulk re-ingest (fewer checkpoints, fewer full-page images)
    # Rebuilding the largest index without a lock (REINDEX CONCURRENTLY) needs room for a second copy;
    # moving the largest table into partitions needs room for its copy.
    rebuild = max(largest_index, largest_table)
    needed = data + indexes + bloat + wal + rebuild
    disk = needed / 0.7  # a volume kept under 70% full: room to grow and for VACUUM FULL of a partition

    # The hot set: what pages and ingestion read all the time. The file index and the per-path totals
    # (every file page, every finish step), every commits index (lists, dedup, activity), the links'
    # task index, and the last 90 days of commits and file changes (pages' windows, the newest pages of
    # every list), heap and indexes. Older history is read by the occasional whole-history analysis,
    # from disk.
    recent = 90 / HISTORY_DAYS
    commit_indexes = tables["commits"]["index_bytes"]
    hot = (
        tables["files"]["heap_bytes"] + tables["files"]["index_bytes"]
        + tables["file_histories"]["heap_bytes"] + tables["file_histories"]["index_bytes"]
        + commit_indexes
        + recent * tables["commits"]["heap_bytes"]
        + recent * (tables["file_changes"]["heap_bytes"] + tables["file_changes"]["index_bytes"])
        + sum(
            i.bytes for i in sizes["commit_task_links"].index_sizes if i.name == "idx_commit_task_links_task"
        ) * scale
    )  # fmt: skip
    ram = _power_of_two_gib(hot / 0.75)  # the hot set in shared_buffers + page cache, a quarter spare
    shared_buffers = ram / 4

    rows_changes = tables["file_changes"]["rows"]
    rows_commits = tables["commits"]["rows"]
    worker_hours = {
        "database-bound": worker_hours_of(ingest, rows_commits, rows_changes),
        "git-bound": worker_hours_of(GIT_BOUND_INGEST, rows_commits, rows_changes),
    }
    planning = max(worker_hours.values())
    workers = math.ceil(planning / hours)
    needed_rate = rows_changes / (hours * 3600)
    wal_per_change = sum(step.wal_bytes for step in fill) / max(
        next(step.rows for step in fill if step.table == "file_changes"), 1
    )
    db_seconds_per_change = sum(step.seconds for step in fill) / max(
        next(step.rows for step in fill if step.table == "file_changes"), 1
    )
    connections_ingest = workers * 2  # a prefork pool process: 1 task + its heartbeat (docs/operations.md)
    connections_web = 10 * 2 * 4  # 10 web pods x 2 gunicorn processes x 4 threads
    connections = connections_ingest + connections_web + 11 + 24  # reserve, the default queue's workers
    # The queries whose cost the table's size does not change (the others follow a repository's share).
    point_queries = [q for q in queries if not q.share_bound]
    return {
        "scale": scale,
        "tables": tables,
        "data_bytes": data,
        "index_bytes": indexes,
        "bloat_bytes": bloat,
        "wal_bytes": wal,
        "rebuild_bytes": rebuild,
        "needed_bytes": needed,
        "disk_bytes": disk,
        "hot_bytes": hot,
        "ram_bytes": ram,
        "shared_buffers_bytes": shared_buffers,
        "worker_hours": worker_hours,
        "workers_for": {str(h): math.ceil(planning / h) for h in sorted({4.0, 12.0, 24.0, hours})},
        "reingest_hours": hours,
        "reingest_file_changes_per_second": needed_rate,
        "workers": workers,
        "wal_bytes_per_file_change": wal_per_change,
        "reingest_wal_bytes_per_second": wal_per_change * needed_rate,
        "db_seconds_per_file_change": db_seconds_per_change,
        "reingest_db_cores": db_seconds_per_change * needed_rate,
        "connections": connections,
        "connections_ingest": connections_ingest,
        "slowest_point_query_ms": max(q.median_ms for q in point_queries),
    }


def worker_hours_of(rate: dict[str, Any], commits: float, changes: float) -> float:
    """Hours one worker takes for ``commits`` and ``changes`` at ``rate``: whichever of its two rates
    (commits a second, file changes a second) takes longer, so neither is assumed cheaper than measured."""
    seconds = rate["seconds"] * rate["workers"]
    return max(commits / rate["commits"], changes / rate["file_changes"]) * seconds / 3600


def _power_of_two_gib(value: float) -> float:
    gib = max(1, math.ceil(value / GIB))
    return float(2 ** math.ceil(math.log2(gib))) * GIB


# ---------------------------------------------------------------------------------------------- print


def gib(value: float) -> str:
    if value >= 1024 * GIB:
        return f"{value / 1024 / GIB:,.1f} TiB"
    return f"{value / GIB:,.1f} GiB" if value >= GIB else f"{value / 1024**2:,.1f} MiB"


def report_fill(fill: list[FillStep], seconds_setup: float) -> None:
    print(f"\n(1) fill (INSERT ... SELECT, one statement a table; setup {seconds_setup:.1f} s)")
    print(f"  {'table':20} {'rows':>12} {'seconds':>9} {'rows/s':>10} {'WAL B/row':>10}")
    for step in fill:
        rate = step.rows / step.seconds if step.seconds else 0
        per_row = step.wal_bytes / step.rows if step.rows else 0
        print(f"  {step.table:20} {step.rows:12,} {step.seconds:9.1f} {rate:10,.0f} {per_row:10,.0f}")


def report_sizes(sizes: dict[str, TableSize], path_bytes: float) -> None:
    print("\n(2) bytes per row (heap = main fork; TOAST = TOAST, free-space and visibility maps)")
    print(f"  {'table':20} {'rows':>12} {'heap':>7} {'TOAST':>6} {'indexes':>8} {'total':>7}")
    for size in sizes.values():
        print(
            f"  {size.table:20} {size.rows:12,} {size.per_row(size.heap):7.0f} "
            f"{size.per_row(size.toast):6.0f} {size.per_row(size.indexes):8.0f} "
            f"{size.per_row(size.heap + size.toast + size.indexes):7.0f}"
        )
    print(
        f"  (paths average {path_bytes:.0f} bytes: every byte more costs about 2 bytes a file change, "
        "in the row and in (commit_id, path))"
    )
    print(f"\n  {'index':36} {'B/row':>6} {'REINDEXed':>9} {'depth':>5} {'leaf fill':>9}")
    for size in sizes.values():
        for index in size.index_sizes:
            level = "" if index.level is None else str(index.level + 1)
            density = "" if index.leaf_density is None else f"{index.leaf_density:.0f}%"
            print(
                f"  {index.name:36} {size.per_row(index.bytes):6.1f} {size.per_row(index.bytes_packed):9.1f} "
                f"{level:>5} {density:>9}"
            )


def report_queries(queries: list[QueryFigures]) -> None:
    print(
        "\n(3) hot queries at the slice's size (after VACUUM ANALYZE; heap fetches before it in brackets;"
        "\n    * = checked on the plan without sequential scans, see --help)"
    )
    for query in queries:
        verdict = "ok" if query.ok else f"FAILED: {query.problem}"
        fetches = ""
        if query.heap_fetches is not None:
            before = (
                f"{query.heap_fetches_unvacuumed:,}"
                if query.heap_fetches_unvacuumed is not None
                else "+".join(query.unvacuumed_nodes)  # not index-only before VACUUM: the heap, row by row
            )
            fetches = f", heap fetches {query.heap_fetches:,} ({before})"
        claim = " or ".join(query.indexes) + "".join(f" + {index}" for index in query.joined)
        print(
            f"  {query.name:42} {query.median_ms:8.2f} ms {query.rows:6,} rows {query.buffers:6,} buffers  "
            f"[{query.expect}{'*' if query.share_bound else ''} {claim}: {verdict}{fetches}]"
        )
        print(f"      {query.caller}; plan: {', '.join(query.nodes)}")
        if query.share_bound:
            print(
                f"      without sequential scans ({query.claim_execution_ms:.2f} ms): "
                + ", ".join(query.claim_nodes)
            )


def report_ingest(ingest: dict[str, Any]) -> None:
    per_changes = ingest["file_changes"] / ingest["seconds"] / ingest["workers"]
    per_commits = ingest["commits"] / ingest["seconds"] / ingest["workers"]
    print(
        f"\n(4) ingest rate: {per_commits:,.0f} commits/s, {per_changes:,.0f} file changes/s a worker "
        f"({ingest['commits']:,} commits, {ingest['file_changes']:,} file changes "
        f"in {ingest['seconds']:.2f} s "
        f"on {ingest['workers']} worker{'s' if ingest['workers'] > 1 else ''}; {ingest['source']})"
    )
    if ingest.get("steps"):
        print(f"    steps: {ingest['steps']}")
    if ingest.get("sizes"):
        print(
            "    bytes a row of what it wrote: "
            + ", ".join(f"{table} {per_row:,.0f}" for table, per_row in ingest["sizes"].items())
        )


def report_projection(full: dict[str, Any]) -> None:
    scale = full["scale"]
    print(
        f"\n(5) projection x{scale:,.0f}: {FULL_REPOSITORIES:,} repositories, "
        f"{full['tables']['commits']['rows']:,.0f} commits, "
        f"{full['tables']['file_changes']['rows']:,.0f} file changes"
    )
    print(f"  {'table':20} {'rows':>16} {'heap+TOAST':>12} {'indexes':>12} {'REINDEXed':>12}")
    for table, figures in full["tables"].items():
        print(
            f"  {table:20} {figures['rows']:16,.0f} {gib(figures['heap_bytes']):>12} "
            f"{gib(figures['index_bytes']):>12} {gib(figures['index_bytes_packed']):>12}"
        )
    print(f"  data {gib(full['data_bytes'])} + indexes {gib(full['index_bytes'])}")
    print(
        f"  disk: + 20% bloat {gib(full['bloat_bytes'])} + WAL {gib(full['wal_bytes'])} + one rebuild "
        f"{gib(full['rebuild_bytes'])} = {gib(full['needed_bytes'])}; at 70% full: {gib(full['disk_bytes'])}"
    )
    print(
        f"  memory: hot set {gib(full['hot_bytes'])} -> RAM {gib(full['ram_bytes'])}, "
        f"shared_buffers {gib(full['shared_buffers_bytes'])}"
    )
    hours = full["worker_hours"]
    print(
        f"  re-ingest: {hours['database-bound']:,.0f} worker-hours at the rate of (4), "
        f"{hours['git-bound']:,.0f} at git's pace on a real history (git/git, docs/performance.md); "
        "workers, planned on the larger: "
        + ", ".join(f"{workers} in {float(h):g} h" for h, workers in full["workers_for"].items())
    )
    print(
        f"  in {full['reingest_hours']:g} h: {full['reingest_file_changes_per_second']:,.0f} file changes/s, "
        f"WAL {full['reingest_wal_bytes_per_second'] / 1024**2:,.1f} MiB/s "
        f"({full['wal_bytes_per_file_change']:,.0f} B a file change with its share of the other tables), "
        f"about {full['reingest_db_cores']:.1f} database cores of writing"
    )
    print(
        f"  connections: {full['connections_ingest']} for ingestion workers + 80 web + 35 others "
        f"= {full['connections']} (max_connections or PgBouncer)"
    )
    print(
        f"  slowest query that stays the same at any size: {full['slowest_point_query_ms']:.2f} ms "
        "(the slice's, plus a B-tree level or two)"
    )


# ----------------------------------------------------------------------------------------------- main


def django_setup(url: str, workdir: Path) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",  # DEBUG keeps every query in memory
            "APM_DEBUG_TOOLBAR": "false",
            "DJANGO_LOG_LEVEL": "WARNING",
            "DATABASE_URL": url,
            "DATABASE_POOL_SIZE": "1",
            "DATABASE_MAX_OVERFLOW": "1",
            "APM_CACHE": "none",
            "APM_INGEST_THREADS": "1",  # --ingest measures one worker
            "APM_REPO_ROOTS": str(workdir),
            "APM_WORKSPACE": str(workdir / "workspace"),
        }
    )
    os.environ.pop("CELERY_BROKER_URL", None)  # eager, in this process: the rate of one worker
    import django

    django.setup()


# Written on the scratch database when it is created: a database without it is somebody's data.
SCRATCH_COMMENT = "scratch database of benchmarks/scale.py"


def database_claim(url: str) -> Any:
    """Create the scratch database afresh, after making sure it is one: an existing database is dropped
    only when this benchmark created it (its comment says so), never a developer's or a deployment's,
    and never while another run uses it. Returns the connection that holds the claim: the run keeps it
    open to its end, and a second run on the same name stops at once instead of dropping the first's
    database under it."""
    import psycopg

    base, name = url.rsplit("/", 1)
    try:
        holder = psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as error:
        sys.exit(f"cannot reach PostgreSQL at {base}: {error}")
    # A session lock on the database's name, held by `holder` until the run ends (or its process dies).
    claimed = holder.execute(
        "SELECT pg_try_advisory_lock(hashtext('benchmarks/scale.py'), hashtext(%s))", [name]
    ).fetchone()
    if not (claimed and claimed[0]):
        holder.close()
        sys.exit(
            f"another run of benchmarks/scale.py is using database {name}: wait for it to end, or give "
            "--database-url a database name of its own."
        )
    try:
        with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=10) as connection:
            row = connection.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name]
            ).fetchone()
            if row is not None and row[0] != SCRATCH_COMMENT:
                sys.exit(
                    f"database {name} exists and was not created by benchmarks/scale.py: it is not "
                    "dropped. Give --database-url a database name of its own."
                )
    except psycopg.OperationalError as error:
        sys.exit(f"cannot reach PostgreSQL at {base}: {error}")
    database_reset(url)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f"COMMENT ON DATABASE \"{name}\" IS '{SCRATCH_COMMENT}'")
    return holder


def database_drop(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables_vacuum(analyze_only: bool = False) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # The slice's tasks and their events too: the task analytics are estimated from their statistics
        # (without them, the history's rows are taken for a handful).
        for table in SETTLED_TABLES:
            cursor.execute(f"{'ANALYZE' if analyze_only else 'VACUUM (ANALYZE)'} {table}")


def main() -> None:
    options = arguments()
    if not options.database_url.startswith("postgres"):
        sys.exit(
            "benchmarks/scale.py measures PostgreSQL (its size functions, EXPLAIN (ANALYZE, BUFFERS) and "
            "the projection to one PostgreSQL and beyond): give a postgres:// --database-url. SQLite is "
            "not meant for this size; MariaDB is not sized here (docs/scale.md)."
        )
    options_check(options)
    size = slice_of(options)
    repeat = options.repeat or (3 if options.quick else 9)
    claim = database_claim(options.database_url)
    workdir = Path(tempfile.mkdtemp(prefix="apm-scale-"))
    try:
        django_setup(options.database_url, workdir)
        results = run(options, size, repeat, workdir)
    finally:
        from django.db import connections

        connections.close_all()
        if not options.keep:
            database_drop(options.database_url)
        claim.close()  # the next run may take the name
        shutil.rmtree(workdir, ignore_errors=True)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2, default=str))
    failed = [query["name"] for query in results["queries"] if not query["ok"]]
    if failed:
        print(f"\nFAILED: {len(failed)} plan claim(s) not met: {', '.join(failed)}")
        sys.exit(1)


def run(options: argparse.Namespace, size: Slice, repeat: int, workdir: Path) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection

    print(
        f"slice 1/{1 / size.fraction:,.0f}: {size.repositories:,} repositories "
        f"x {size.commits_each:,} commits, "
        f"{CHANGES_PER_COMMIT} file changes a commit, {size.files_each:,} files a tree; PostgreSQL "
        f"{connection.cursor().connection.info.server_version // 10000} in "
        f"{options.database_url.rsplit('/', 1)[1]}"
    )
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    setup_seconds = time.perf_counter() - started
    if options.ingest:
        # First, into the empty tables: the rate of one worker, and the size of what it wrote alone.
        ingest = ingest_measure(options.ingest_commits or (500 if options.quick else 20_000), workdir)
        ingest["sizes"] = ingested_sizes()
    else:
        ingest = dict(QUOTED_INGEST)
    repository_ids, fill = slice_fill(size)
    report_fill(fill, setup_seconds)

    # Statistics but no VACUUM yet: the visibility map is empty, as it is for rows ingested since
    # autovacuum last came by; index-only scans then read the heap for every row (heap fetches).
    from insights.hot_queries import query_explain

    tables_vacuum(analyze_only=True)
    queries = hot_queries(repository_ids, size)
    unvacuumed = {query.name: query_explain(query) for query in queries if query.expect == "index-only"}
    tables_vacuum()
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")

    sizes = sizes_measure()
    packed_sizes_measure(sizes)
    tables_vacuum()  # REINDEX leaves statistics and the visibility map alone, but keep it as autovacuum would
    path_bytes = float(scalar("SELECT AVG(octet_length(path)) FROM file_changes"))
    report_sizes(sizes, path_bytes)

    figures = [query_measure(query, repeat, unvacuumed.get(query.name)) for query in queries]
    report_queries(figures)

    report_ingest(ingest)

    full = projection(
        size=size, sizes=sizes, fill=fill, queries=figures, ingest=ingest, hours=options.reingest_hours
    )
    report_projection(full)
    return {
        "slice": {**asdict(size), "commits": size.commits},
        "fill": [asdict(step) for step in fill],
        "path_bytes": path_bytes,
        "tables": {
            table: {
                "rows": measured.rows,
                "heap_per_row": measured.per_row(measured.heap),
                "toast_per_row": measured.per_row(measured.toast),
                "indexes_per_row": measured.per_row(measured.indexes),
                "indexes": {
                    index.name: {
                        "per_row": measured.per_row(index.bytes),
                        "packed_per_row": measured.per_row(index.bytes_packed),
                        "depth": None if index.level is None else index.level + 1,
                        "leaf_density": index.leaf_density,
                    }
                    for index in measured.index_sizes
                },
            }
            for table, measured in sizes.items()
        },
        "queries": [asdict(query) for query in figures],
        "ingest": ingest,
        "projection": full,
    }


def ingested_sizes() -> dict[str, float]:
    """Bytes a row (heap, TOAST and indexes, vacuumed) of what the ingestion wrote, then emptied: the
    slice is filled into empty tables after it."""
    from django.db import connection

    tables_vacuum()
    per_row = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(
                "SELECT (SELECT COUNT(*) FROM " + table + "), pg_total_relation_size(%s::regclass)",  # noqa: S608
                [table],
            )
            rows, total = cursor.fetchone()
            per_row[table] = total / rows if rows else 0.0
        # Ids from 1 again: the slice gets the same ids, so the same rows, with or without --ingest.
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
    return per_row


if __name__ == "__main__":
    main()
