"""The hot queries: what the lists, the dashboards, the analytics and ingestion run all the time, and
the checks their PostgreSQL plans must pass (``manage.py explain_hot_queries``, ``benchmarks/scale.py``).

Every query is built from the code that runs it: a selector's queryset (``sql_with_params``), or the
statements a real call runs, captured (``CaptureQueriesContext``) inside a transaction that is rolled
back. So the check follows the code: a selector that changes its query changes what is explained.

A plan passes when
  * no big table (``BIG_TABLES``) is read by a Seq Scan, and the index a query claims is used;
  * no node's row estimate is off from the rows it returned by more than ``ESTIMATE_LIMIT`` times
    (per loop; a node never executed is skipped; a node its parent stops early, under a Limit or the
    inner side of a semi-join, counts only when it returned more rows than estimated).
PostgreSQL only: ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from rest_framework.test import APIRequestFactory, force_authenticate

from insights.code import file_hotspots
from insights.scale_slice import CHUNK_COMMITS, cursor_json, scalar
from insights.selectors import (
    ACTIVITY_WEEKS,
    portfolio_closed_per_day,
    project_charts_cached,
    project_health_cached,
    project_portfolio_cached,
    project_progress_cached,
    project_summary_cached,
)
from repos.ingestion.writers import file_histories_add, file_histories_chunk_select, files_history_refresh
from repos.models import Commit, CommitTaskLink, IngestionRun, Repository
from repos.selectors import commit_list, file_change_list, file_list, task_commit_links
from tasks.api.views import TaskViewSet
from tasks.models import Task

# Tables that grow with history or with the number of projects: a plan must never read one whole.
BIG_TABLES = frozenset(
    {"commits", "file_changes", "files", "file_histories", "commit_task_links", "tasks", "task_events"}
)
# A row estimate off by more than this (either way) makes the planner choose joins and scans for a
# table of the wrong size.
ESTIMATE_LIMIT = 100.0
# Below this many rows, estimated and actual, no estimate error changes a plan's cost much (an empty
# table is estimated at its ten default pages' worth of rows, a few hundred, by design).
ESTIMATE_MIN_ROWS = 1000

# Nodes that read their whole input before returning a row: a parent stopping early does not stop them.
_CONSUMES_INPUT = frozenset({"Sort", "Hash", "Materialize"})
_CONSUMING_AGGREGATES = frozenset({"Plain", "Hashed"})


class RolledBack(Exception):
    """Raised to roll back the transaction a statement was run or explained in."""


@dataclass
class HotQuery:
    """A query the pages, the API or ingestion run all the time, and the index it must be answered from.

    ``expect``: "index-only" (an Index Only Scan on one of ``indexes``: the answer is in the index, and
    the heap is read only for pages the visibility map does not vouch for), "index" (a scan of one of
    ``indexes``) or "" (no index named: a statement of a captured call, checked by the general rules);
    ``joined``: indexes the plan must also use for its joins. No plan may read a big table sequentially.

    ``share_bound``: the query reads one repository's rows, one project's or a chunk's, a share of the
    table far larger in a generated slice (one repository of ten) than at full size (one of 10,000), so
    the planner rightly reads the slice's small table sequentially. The claim is then checked on the plan
    it falls back to with sequential scans off (``enable_seqscan``), the one the full size's share leads to.
    ``writes``: an INSERT or UPDATE, explained (and so run) in a transaction that is rolled back.
    ``full_read``: the reason a query reads whole tables (a figure of every project, cached): its
    sequential scans are reported, not failed.
    """

    name: str
    caller: str
    expect: str
    indexes: tuple[str, ...]
    sql: str
    params: list[Any] | None
    joined: tuple[str, ...] = ()
    share_bound: bool = False
    writes: bool = False
    full_read: str = ""  # why it reads whole tables by design: its Seq Scans are reported, not failed


@dataclass
class QueryCheck:
    """What ``query_check`` found of one hot query's plan."""

    name: str
    caller: str
    expect: str
    indexes: list[str]
    share_bound: bool
    full_read: str
    scans: list[str]  # the scans of the plan chosen at this size
    claim_scans: list[str]  # the scans of the plan the seq-scan and index rules were checked on
    rows: int
    buffers: int
    execution_ms: float
    worst_estimate: float  # the largest ratio between a node's estimated and actual rows
    worst_estimate_node: str
    problems: list[str]
    plan: dict[str, Any] = field(repr=False)

    @property
    def passed(self) -> bool:
        return not self.problems


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``plan`` and every node below it, depth first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def scans_of(nodes: list[dict[str, Any]]) -> list[str]:
    """The scans of a plan's nodes, as "Index Scan on idx_x" or "Seq Scan on table"."""
    return [
        node["Node Type"]
        + (f" on {node['Index Name']}" if node.get("Index Name") else "")
        + (f" on {node['Relation Name']}" if node["Node Type"] in ("Seq Scan", "Bitmap Heap Scan") else "")
        for node in nodes
        if "Scan" in node["Node Type"]
    ]


def node_label(node: dict[str, Any]) -> str:
    """A node as a person finds it in the plan: its type and the relation or index it reads."""
    target = node.get("Index Name") or node.get("Relation Name")
    return str(node["Node Type"]) + (f" on {target}" if target else "")


def _stops_children_early(node: dict[str, Any], child: dict[str, Any]) -> bool:
    """Whether ``node`` may stop reading ``child`` before it has returned all its rows."""
    if node["Node Type"] == "Limit" or node["Node Type"] == "Merge Join":
        return True
    if node.get("Join Type") in ("Semi", "Anti") and child.get("Parent Relationship") == "Inner":
        return True
    # EXISTS and scalar subqueries stop at their first row.
    return bool(
        child.get("Parent Relationship") in ("SubPlan", "InitPlan")
        and "LIMIT" not in child.get("Subplan Name", "LIMIT")
    )


def _reads_all(node: dict[str, Any]) -> bool:
    return node["Node Type"] in _CONSUMES_INPUT or (
        node["Node Type"] == "Aggregate" and node.get("Strategy") in _CONSUMING_AGGREGATES
    )


def estimate_ratios(plan: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    """Each executed node's estimate error: the ratio of its estimated rows to its actual rows per loop
    (or the other way round, the larger of the two; zeros count as one), with the node.

    A node its parent may stop early (under a Limit, the inner side of a semi- or anti-join or a merge
    join, a subplan) returns fewer rows than estimated by design: only an underestimate counts there.
    Nodes never executed ("Actual Loops" 0) have no actual rows and are left out.
    """
    ratios: list[tuple[float, dict[str, Any]]] = []

    def walk(node: dict[str, Any], cut_short: bool) -> None:
        if node.get("Actual Loops", 1) == 0:
            return
        estimated = max(float(node.get("Plan Rows", 0)), 1.0)
        actual = max(float(node.get("Actual Rows", 0)), 1.0)
        ratio = actual / estimated if cut_short else max(actual / estimated, estimated / actual)
        ratios.append((ratio, node))
        for child in node.get("Plans", []):
            below = (cut_short and not _reads_all(node)) or _stops_children_early(node, child)
            walk(child, below)

    walk(plan, False)
    return ratios


def estimate_problem(
    plan: dict[str, Any], limit: float = ESTIMATE_LIMIT, min_rows: int = ESTIMATE_MIN_ROWS
) -> str:
    """The nodes whose estimate is off by more than ``limit`` times, where the estimate or the actual
    rows reach ``min_rows`` ("" when none is)."""
    off = [
        f"{node_label(node)}: estimated {node.get('Plan Rows', 0):,} rows, "
        f"{node.get('Actual Rows', 0):,} a loop ({ratio:,.0f}x)"
        for ratio, node in estimate_ratios(plan)
        if ratio > limit and max(node.get("Plan Rows", 0), node.get("Actual Rows", 0)) >= min_rows
    ]
    return "; ".join(off)


def claim_problem(query: HotQuery, nodes: list[dict[str, Any]]) -> str:
    """What the plan made of ``nodes`` does not do of what ``query`` claims ("" when it does it all)."""
    used = {node.get("Index Name") for node in nodes} - {None}
    only = {node.get("Index Name") for node in nodes if node["Node Type"] == "Index Only Scan"}
    problems = []
    if query.expect == "index-only" and not only & set(query.indexes):
        problems.append(f"no Index Only Scan on {' or '.join(query.indexes)}")
    elif query.expect == "index" and not used & set(query.indexes):
        problems.append(f"{' or '.join(query.indexes)} not used")
    problems += [f"{index} not used" for index in query.joined if index not in used]
    sequential = sorted({n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"} & BIG_TABLES)
    if sequential and not query.full_read:
        problems.append(f"Seq Scan on {', '.join(sequential)}")
    return "; ".join(problems)


def query_explain(query: HotQuery, *, seqscan: bool = True) -> dict[str, Any]:
    """``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` of ``query``, in a transaction that is rolled back: a
    write changes nothing, and ``enable_seqscan`` is back on after it."""
    explained: dict[str, Any] = {}
    try:
        with transaction.atomic():
            if not seqscan:
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL enable_seqscan = off")
            explained = cursor_json(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query.sql}", query.params)[0]
            raise RolledBack
    except RolledBack:
        pass
    return explained


def query_check(
    query: HotQuery, *, explained: dict[str, Any] | None = None, claimed: dict[str, Any] | None = None
) -> QueryCheck:
    """The plan of ``query`` against the rules (see the module), explained now unless given; ``claimed``
    is the plan the rules are checked on (without seq scans for a ``share_bound`` query)."""
    explained = explained or query_explain(query)
    nodes = list(plan_nodes(explained["Plan"]))
    if claimed is None:
        claimed = query_explain(query, seqscan=False) if query.share_bound else explained
    claim_nodes = list(plan_nodes(claimed["Plan"]))
    problems = [
        problem
        for problem in (claim_problem(query, claim_nodes), estimate_problem(explained["Plan"]))
        if problem
    ]
    ratios = estimate_ratios(explained["Plan"])
    worst, worst_node = max(ratios, key=lambda pair: pair[0]) if ratios else (1.0, explained["Plan"])
    top = explained["Plan"]
    return QueryCheck(
        name=query.name,
        caller=query.caller,
        expect=query.expect,
        indexes=list(query.indexes),
        share_bound=query.share_bound,
        full_read=query.full_read,
        scans=scans_of(nodes),
        claim_scans=scans_of(claim_nodes),
        rows=int(top.get("Actual Rows", 0)),
        buffers=int(top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)),
        execution_ms=float(explained["Execution Time"]),
        worst_estimate=round(worst, 1),
        worst_estimate_node=node_label(worst_node),
        problems=problems,
        plan=explained,
    )


# ------------------------------------------------------------------------------------- the hot queries


@dataclass
class Sample:
    """The rows the hot queries are asked about: a repository, its newest commit, a chunk of its commits
    from the middle of its history, its busiest path, a task its commits name."""

    repository: Repository
    newest: Commit
    chunk_ids: list[int]
    chunk_shas: list[str]
    path: str
    task: Task
    run_id: int


class NothingToExplain(Exception):
    """The database holds no repository with commits: the hot queries have nothing to read."""


def sample_pick(*, repository: Repository | None = None, chunk_size: int = CHUNK_COMMITS) -> Sample:
    """The rows to ask about: those of ``repository``, or of the repository of the newest commit. Every
    lookup here goes through an index (idx_commits_timestamp, idx_commits_repo_time), whatever the size."""
    if repository is None:
        newest_anywhere = (
            Commit.objects.filter(repository__deleting_since__isnull=True)
            .order_by("-timestamp", "-id")
            .first()
        )
        if newest_anywhere is None:
            raise NothingToExplain("no repository has commits: there is nothing to explain")
        repository = newest_anywhere.repository
    repository = Repository.objects.select_related("project").get(pk=repository.pk)
    commits = Commit.objects.filter(repository=repository).order_by("-timestamp", "-id")
    newest = commits.filter(is_merge=False).first() or commits.first()
    if newest is None:
        raise NothingToExplain(f"repository {repository.pk} has no commits: there is nothing to explain")
    # A chunk delivered again: the shas of up to ``chunk_size`` commits from the middle of the history.
    total = commits.count()
    chunk_size = max(1, min(chunk_size, total))
    middle = max(0, total // 2 - chunk_size // 2)
    chunk = list(commits.values_list("id", "sha")[middle : middle + chunk_size])
    path = scalar(
        "SELECT path FROM file_histories WHERE repository_id = %s ORDER BY commit_count DESC, path LIMIT 1",
        [repository.pk],
    )
    link = CommitTaskLink.objects.filter(commit__repository=repository).order_by("-commit_id").first()
    task = link.task if link is not None else Task.objects.filter(project=repository.project).first()
    if task is None:
        raise NothingToExplain(f"project {repository.project.key} has no tasks: there is nothing to explain")
    run = IngestionRun.objects.filter(repository=repository).order_by("-id").first()
    return Sample(
        repository=repository,
        newest=newest,
        chunk_ids=[commit_id for commit_id, _ in chunk],
        chunk_shas=[sha for _, sha in chunk],
        path=path or "",
        task=task,
        run_id=run.pk if run is not None else 1,
    )


def _orm(queryset: QuerySet[Any]) -> tuple[str, list[Any]]:
    sql, params = queryset.query.sql_with_params()
    return sql, list(params)


def statements_captured(call: Callable[[], Any], *, writes: bool = False) -> list[str]:
    """The statements ``call`` runs that read or write a big table, as run (parameters inlined), with
    no cache in the way (a miss: what runs when an entry is computed), inside a transaction rolled back."""
    captured: list[str] = []
    try:
        with (
            override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}),
            transaction.atomic(),
            CaptureQueriesContext(connection) as queries,
        ):
            call()
            captured = [query["sql"] for query in queries.captured_queries]
            raise RolledBack
    except RolledBack:
        pass
    kinds = ("SELECT", "WITH", "INSERT", "UPDATE") if writes else ("SELECT", "WITH")
    return [
        sql
        for sql in captured
        if sql.lstrip().upper().startswith(kinds)
        and any(f'"{t}"' in sql or f" {t} " in sql for t in BIG_TABLES)
    ]


def _captured(
    name: str,
    caller: str,
    call: Callable[[], Any],
    *,
    share_bound: bool = False,
    writes: bool = False,
    full_read: str = "",
) -> list[HotQuery]:
    statements = statements_captured(call, writes=writes)
    return [
        HotQuery(
            name if len(statements) == 1 else f"{name} #{number}",
            caller,
            "",
            (),
            sql,
            None,  # run as captured: no placeholders left
            share_bound=share_bound,
            writes=writes,
            full_read=full_read,
        )
        for number, sql in enumerate(statements, start=1)
    ]


def _api_list(viewset: Any, path: str, query: dict[str, str]) -> Callable[[], Any]:
    """A GET of ``path`` by staff through ``viewset``'s list, rendered (the serializer's queries too)."""

    # A host the site answers to: the paginator writes it into the next page's link.
    host = next((name.lstrip(".") for name in settings.ALLOWED_HOSTS if "*" not in name), "localhost")

    def call() -> Any:
        request = APIRequestFactory().get(path, query, HTTP_HOST=host)
        force_authenticate(request, user=User(username="explain_hot_queries", is_staff=True, is_active=True))
        response = viewset.as_view({"get": "list"})(request)
        response.render()
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}: {response.data}")

    return call


def hot_queries(sample: Sample) -> list[HotQuery]:
    """The queries whose cost must not grow with the tables, built from the code that runs them."""
    repository, project, newest, path = (
        sample.repository,
        sample.repository.project,
        sample.newest,
        sample.path,
    )
    now = timezone.now()
    day_ago = now - dt.timedelta(days=1)
    quarter_ago = now - dt.timedelta(days=90)
    chunk = len(sample.chunk_ids)

    def hotspots() -> Any:
        return file_hotspots(project=project, repository=repository, since=quarter_ago, until=now)

    hotspots_sql = next(sql for sql in statements_captured(hotspots) if "file_changes" in sql)
    queries = [
        HotQuery(
            f"chunk: which of {chunk:,} shas are stored",
            "repos.ingestion.writers._commit_ids",
            "index",
            # Either reads this repository's rows only: its unique key, or its history by time.
            ("commit_repository_sha_unique", "idx_commits_repo_time"),
            "SELECT sha, id FROM commits WHERE repository_id = %s AND sha = ANY(%s)",
            [repository.pk, sample.chunk_shas],
            share_bound=True,
        ),
        HotQuery(
            f"chunk: per-path totals of {chunk:,} commits",
            "repos.ingestion.writers.file_histories_add",
            "index",
            ("file_change_commit_path_unique",),
            *file_histories_chunk_select(run_id=0, commit_ids=sample.chunk_ids),
            joined=("commits_pkey",),
            share_bound=True,
        ),
        HotQuery(
            "latest commit of a repository",
            "insights.code.last_commit_at",
            "index-only",
            ("idx_commits_repo_time",),
            "SELECT MAX(c.timestamp) FROM commits c WHERE c.repository_id = %s",
            [repository.pk],
        ),
        HotQuery(
            "commit page of a repository (50)",
            "GET /api/v1/commits/?repository= (repos.selectors.commit_list)",
            "index",
            ("idx_commits_repo_time",),
            *_orm(commit_list().filter(repository=repository).order_by("-timestamp", "-id")[:50]),
        ),
        HotQuery(
            "commit by sha",
            "webhooks, GET /api/v1/commits/{sha}",
            "index",
            ("commit_repository_sha_unique",),
            "SELECT * FROM commits WHERE repository_id = %s AND sha = %s",
            [repository.pk, newest.sha],
        ),
        HotQuery(
            "commits of the last day, all repositories",
            "activity across repositories (idx_commits_timestamp)",
            "index-only",
            ("idx_commits_timestamp",),
            "SELECT COUNT(*) FROM commits WHERE timestamp >= %s",
            [day_ago],
        ),
        HotQuery(
            "an author's commits in 90 days",
            "contributor statistics, the author filter",
            "index-only",
            ("idx_commits_author_time",),
            "SELECT COUNT(*) FROM commits WHERE author_email = %s AND timestamp >= %s",
            [newest.author_email, quarter_ago],
        ),
        HotQuery(
            "paths a commit touched",
            "GET /api/v1/file-changes/?commit=, the per-path totals",
            "index-only",
            ("file_change_commit_path_unique",),
            "SELECT path FROM file_changes WHERE commit_id = %s",
            [newest.pk],
        ),
        HotQuery(
            "changes of one file, counted",
            "a file's history (churn, who touched it)",
            "index-only",
            ("idx_file_changes_repo_path",),
            "SELECT COUNT(*) FROM file_changes WHERE repository_id = %s AND path = %s",
            [repository.pk, path],
        ),
        HotQuery(
            "changes of one file, newest 50",
            "GET /api/v1/file-changes/?repository=&path= (repos.selectors.file_change_list)",
            "index",
            ("idx_file_changes_repo_path",),
            *_orm(file_change_list().filter(repository=repository, path=path).order_by("-id")[:50]),
            joined=("commits_pkey",),  # each change's sha: at most 50 commits, by id
            share_bound=True,
        ),
        HotQuery(
            "hotspots of a repository by churn (50)",
            "GET /api/v1/files/?repository= (repos.selectors.file_list)",
            "index",
            ("idx_files_repo_churn",),
            *_orm(file_list().filter(repository=repository).order_by("-churn", "id")[:50]),
        ),
        HotQuery(
            "commits of a task (50)",
            "task page, /tasks/{key}/commits/ (repos.selectors.task_commit_links)",
            "index",
            ("idx_commit_task_links_task",),
            *_orm(task_commit_links(task=sample.task)[:50]),
        ),
        HotQuery(
            "file hotspots of a repository, 90 days",
            "insights.code.file_hotspots (cached until the next ingestion)",
            "index",
            ("idx_commits_repo_time",),
            hotspots_sql,
            None,
            # The window's changes by commit id; the files of the repository through any index of
            # theirs that starts with the repository (no Seq Scan of a big table is the rule).
            joined=("file_change_commit_path_unique",),
            share_bound=True,
        ),
    ]
    queries.append(
        HotQuery(
            f"tasks closed in {ACTIVITY_WEEKS} weeks, every project",
            "dashboard sparklines (insights.selectors.portfolio_closed_per_day, in the portfolio)",
            "index-only",
            ("idx_task_events_kind_time",),
            *_orm(portfolio_closed_per_day(since=now - dt.timedelta(weeks=ACTIVITY_WEEKS))),
            # The window's closings are a sliver of every event at full size (twelve weeks of years of
            # history, one kind of event of seven); a generated slice holds no task events at all, so
            # the claim is checked on the plan without sequential scans.
            share_bound=True,
        )
    )
    # Lists through the API, as integrations page them: every statement of the request.
    queries += _captured(
        "tasks of a project, first page (API)",
        "GET /api/v1/tasks/?project= (tasks.api.views.TaskViewSet)",
        _api_list(TaskViewSet, "/api/v1/tasks/", {"project": project.key}),
        share_bound=True,  # one project's tasks: a share of the slice's table far larger than at full size
    )
    # Dashboards and analytics, as a cache miss computes them.
    queries += _captured(
        "project summary",
        "GET /api/v1/projects/{key}/summary/ (insights.selectors.project_summary_cached)",
        lambda: project_summary_cached(project=project),
        share_bound=True,
    )
    queries += _captured(
        "portfolio",
        "dashboard, GET /api/v1/projects/ (insights.selectors.project_portfolio_cached)",
        project_portfolio_cached,
        full_read="every project's task counts and weekly activity, once per portfolio generation (cached)",
    )
    queries += _captured(
        "project progress",
        "GET /api/v1/projects/{key}/progress/ (insights.selectors.project_progress_cached)",
        lambda: project_progress_cached(project=project),
        share_bound=True,
    )
    queries += _captured(
        "project health",
        "GET /api/v1/projects/{key}/health/ (insights.selectors.project_health_cached)",
        lambda: project_health_cached(project=project),
        share_bound=True,
    )
    queries += _captured(
        "project charts, 90 days",
        "project page charts (insights.selectors.project_charts_cached)",
        lambda: project_charts_cached(project=project, window="90"),
        share_bound=True,
    )
    # Ingestion's upserts: run and explained inside transactions that are rolled back.
    queries += _captured(
        f"chunk: per-path totals upserted ({chunk:,} commits)",
        "repos.ingestion.writers.file_histories_add (INSERT ... ON CONFLICT DO UPDATE)",
        lambda: file_histories_add(run_id=sample.run_id, commit_ids=sample.chunk_ids),
        share_bound=True,
        writes=True,
    )
    queries += _captured(
        "files refreshed from their histories",
        "repos.ingestion.writers.files_history_refresh (UPDATE ... FROM)",
        lambda: files_history_refresh(repository_id=repository.pk, run_id=sample.run_id, whole_tree=False),
        share_bound=True,
        writes=True,
    )
    return queries
