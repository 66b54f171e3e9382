"""The performance checklist, checked against the running configuration (``manage.py perf_checklist``).

Each item is a small function that looks at the real thing (the database's catalogue, the cache server,
the collected static files, the /metrics view, promtool, the result files of the hot-query analysis and
of the load scenarios, the deployment files) and returns an :class:`Outcome`: PASS or FAIL with the
figure, setting or file that shows it; WARN where the evidence cannot decide (index statistics of a
young database); SKIP where the database has no such thing to ask (index statistics on SQLite).

Reads settings only: the arithmetic of connections comes from config.topology through
``APM_DATABASE_DEMAND``, which this bottom layer may not import.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Index, UniqueConstraint
from django.test import Client
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.utils.module_loading import import_string

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"

# Collected files sampled for their .gz and .br copies.
STATIC_SAMPLE = 20
# An address of TEST-NET-1 (RFC 5737): inside no APM_METRICS_ALLOWED_NETWORKS a real installation uses,
# so the request without the token is judged by the token alone.
OUTSIDE_ADDRESS = "192.0.2.1"
DOCKERFILE_INSTRUCTIONS = frozenset(
    {
        *("FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT"),
        *("VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"),
    }
)


@dataclass(frozen=True)
class Outcome:
    """What one check found: its status and the evidence for it."""

    status: str
    evidence: str


@dataclass(frozen=True)
class ChecklistItem:
    """One line of the checklist's table."""

    name: str
    title: str
    status: str
    evidence: str


@dataclass
class ChecklistContext:
    """What the command was told; each check reads the rest from the settings."""

    load_report: Path | None = None
    alerts_test: Path = field(
        default_factory=lambda: Path(settings.BASE_DIR) / "monitoring" / "alerts_test.yml"
    )
    deploy_root: Path = field(default_factory=lambda: Path(settings.BASE_DIR))


def _production() -> bool:
    return bool(getattr(settings, "APM_PRODUCTION", False))


def _age(moment: datetime) -> str:
    seconds = max(0, int((timezone.now() - moment).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _moment(value: object) -> datetime | None:
    """An ISO 8601 time from a result file, in UTC (UTC when it names no zone); None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:  # past year 9999 once in UTC: as far in the future as a time goes
        return datetime.max.replace(tzinfo=UTC)


# How far ahead of this machine's clock a result file's time may be (another machine's clock) before the
# file is taken for what it is: a time in the future would pass every age limit for good.
CLOCK_SKEW = timedelta(minutes=5)


def _finished_problem(path: Path, finished: datetime | None, *, required: bool) -> str:
    """What is wrong with a result file's finished_at time (read by ``_moment``), or ""."""
    if finished is None:
        return f"{path} has no finished_at time" if required else ""
    if finished > timezone.now() + CLOCK_SKEW:
        return f"{path} says it finished in the future ({finished:%Y-%m-%d %H:%M} UTC)"
    return ""


def _count(value: object) -> int | None:
    """A count from a result file: a whole number of 0 or more, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return int(value) if value == int(value) else None


def _json_file(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The JSON object in ``path``, or None and why not."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"{path} does not exist"
    except (OSError, ValueError, RecursionError) as error:  # RecursionError: nested deeper than Python goes
        return None, f"{path} is not readable JSON ({error})"
    if not isinstance(data, dict):
        return None, f"{path} holds no JSON object"
    return data, ""


# --- Database indexes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeclaredIndex:
    """An index a model declares: by name (Meta.indexes, unique constraints) or by column (db_index)."""

    table: str
    name: str
    columns: tuple[str, ...] = ()


def _creatable(index: Index | UniqueConstraint, database: BaseDatabaseWrapper) -> bool:
    # Django's schema editor leaves out what the vendor cannot build (MariaDB: partial and expression
    # indexes), so their absence there is by design, not drift.
    features = database.features
    if getattr(index, "contains_expressions", False) and not features.supports_expression_indexes:
        return False
    if getattr(index, "condition", None) is not None and not features.supports_partial_indexes:
        return False
    return not (getattr(index, "include", None) and not features.supports_covering_indexes)


def declared_indexes(database: BaseDatabaseWrapper = connection) -> tuple[list[DeclaredIndex], int]:
    """Every index the installed models declare that ``database`` can build, and how many it cannot."""
    declared: list[DeclaredIndex] = []
    skipped = 0
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if (
            not meta.managed
            or meta.proxy
            or meta.swapped
            or not router.allow_migrate_model(database.alias, model)
        ):
            continue
        named = [*meta.indexes, *(c for c in meta.constraints if isinstance(c, UniqueConstraint))]
        for index in named:
            if not _creatable(index, database):
                skipped += 1
                continue
            declared.append(DeclaredIndex(meta.db_table, str(index.name)))
        for model_field in meta.local_fields:
            if (
                getattr(model_field, "db_index", False)
                and not model_field.unique
                and not model_field.primary_key
            ):
                declared.append(DeclaredIndex(meta.db_table, "", (str(model_field.column),)))
    return declared, skipped


def indexes_present(context: ChecklistContext) -> Outcome:
    """Every index the models declare exists in the database (its catalogue, through introspection)."""
    declared, skipped = declared_indexes()
    tables = set(connection.introspection.table_names())
    missing: list[str] = []
    found: dict[str, dict[str, Any]] = {}
    with connection.cursor() as cursor:
        for index in declared:
            if index.table not in tables:
                missing.append(f"table {index.table}")
                continue
            if index.table not in found:
                found[index.table] = {
                    name.lower(): details
                    for name, details in connection.introspection.get_constraints(cursor, index.table).items()
                }
            constraints = found[index.table]
            if index.name:
                present = index.name.lower() in constraints
            else:
                # db_index=True: any index leading with the column serves it (MariaDB's foreign keys use
                # the composite index that starts with their column instead of one of their own).
                present = any(
                    (details.get("index") or details.get("unique") or details.get("primary_key"))
                    and list(details.get("columns") or [])[:1] == list(index.columns)
                    for details in constraints.values()
                )
            if not present:
                missing.append(f"{index.table}.{index.name or index.columns[0]}")
    missing = sorted(set(missing))
    scope = (
        f"{len(declared)} declared indexes on {len({i.table for i in declared})} tables ({connection.vendor})"
    )
    note = f"; {skipped} partial/expression ones {connection.vendor} cannot build left out" if skipped else ""
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return Outcome(FAIL, f"{len(missing)} of {scope} missing: {shown} (run migrate){note}")
    return Outcome(PASS, f"all {scope} exist{note}")


def indexes_used(context: ChecklistContext) -> Outcome:
    """The declared indexes of the big tables have been scanned (PostgreSQL's pg_stat_user_indexes).

    Advisory: the counts start at the last statistics reset (a new database, a restore, a failover,
    pg_stat_reset()), and a feature nobody used since leaves its index at 0 without anything being
    wrong. A WARN says where to look; whether the hot queries use their indexes is proved by their plans
    (hot_queries).
    """
    if connection.vendor != "postgresql":
        return Outcome(
            SKIP,
            f"{connection.vendor} keeps no per-index scan counts by default "
            "(PostgreSQL's pg_stat_user_indexes)",
        )
    declared, _ = declared_indexes()
    names = {index.name for index in declared if index.name}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.relname, s.indexrelname, s.idx_scan, GREATEST(t.n_live_tup, c.reltuples::bigint) "
            "FROM pg_stat_user_indexes s JOIN pg_stat_user_tables t ON t.relid = s.relid "
            "JOIN pg_class c ON c.oid = s.relid"
        )
        rows = cursor.fetchall()
        cursor.execute(
            "SELECT pg_stat_get_db_stat_reset_time(oid) FROM pg_database WHERE datname = current_database()"
        )
        reset = cursor.fetchone()[0]
    since = f"since {reset:%Y-%m-%d %H:%M} UTC" if reset else "since the database was created"
    declared_rows = [row for row in rows if row[1] in names]
    # A table smaller than APM_PERF_HOT_TABLE_ROWS is read whole however it is indexed, so its index
    # statistics say nothing about the indexes (docs/scale.md's tables reach millions of rows).
    rows_least = int(settings.APM_PERF_HOT_TABLE_ROWS)
    hot = [row for row in declared_rows if row[3] >= rows_least]
    if not hot:
        largest = max(declared_rows, key=lambda row: row[3], default=None)
        biggest = f" (largest: {largest[0]}, {largest[3]} rows)" if largest else ""
        return Outcome(
            WARN,
            f"no table with declared indexes has {rows_least:,} rows yet{biggest}: PostgreSQL reads small "
            "tables whole, so scan counts cannot tell yet",
        )
    unused = sorted(f"{table}.{name}" for table, name, scans, _ in hot if not scans)
    tables = len({row[0] for row in hot})
    if unused:
        shown = ", ".join(unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
        return Outcome(
            WARN, f"{len(unused)} of {len(hot)} indexes on {tables} big tables never scanned {since}: {shown}"
        )
    fewest = min(hot, key=lambda row: row[2])
    return Outcome(
        PASS,
        f"all {len(hot)} declared indexes on {tables} tables of {rows_least:,}+ rows scanned {since} "
        f"(fewest: {fewest[1]}, {fewest[2]})",
    )


def hot_queries(context: ChecklistContext) -> Outcome:
    """``manage.py explain_hot_queries`` passed, recently: its hot-queries.json in APM_PERF_DIR."""
    path = Path(settings.APM_PERF_DIR) / "hot-queries.json"
    data, problem = _json_file(path)
    if data is None:
        return Outcome(FAIL, f"{problem}: run manage.py explain_hot_queries")
    finished = _moment(data.get("finished_at"))
    problem = _finished_problem(path, finished, required=True)
    if finished is None or problem:
        return Outcome(FAIL, problem)
    queries = data.get("queries")
    count = len(queries) if isinstance(queries, list) else 0
    when = f"{finished:%Y-%m-%d %H:%M} UTC, {_age(finished)}"
    database = f" on {data['database']}" if data.get("database") else ""
    if data.get("passed") is not True:
        failed = [
            str(query.get("name", "?"))
            for query in (queries if isinstance(queries, list) else [])
            if isinstance(query, dict) and query.get("passed") is False
        ]
        named = f": {', '.join(failed[:5])}" if failed else ""
        return Outcome(FAIL, f"{path} says failed ({when}){named}")
    if not count:
        return Outcome(FAIL, f"{path} analysed no query ({when})")
    limit = timedelta(days=settings.APM_PERF_MAX_AGE_DAYS)
    if timezone.now() - finished > limit:
        return Outcome(
            FAIL,
            f"{count} plans passed {when}{database}: older than APM_PERF_MAX_AGE_DAYS "
            f"({settings.APM_PERF_MAX_AGE_DAYS}); run manage.py explain_hot_queries again",
        )
    return Outcome(PASS, f"{count} plans passed{database} ({when}; {path.name})")


# --- Database connections -----------------------------------------------------------------------------


def _server_limits() -> tuple[int, int, str]:
    """``(max_connections, connections the server keeps for itself, how it was asked)``."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT current_setting('max_connections')::int, "
                "current_setting('superuser_reserved_connections')::int, "
                # PostgreSQL 16's reserve for pg_use_reserved_connections; NULL before 16.
                "COALESCE(current_setting('reserved_connections', true)::int, 0)"
            )
            maximum, superuser, reserved = cursor.fetchone()
            return maximum, superuser + reserved, "SHOW max_connections"
        # MariaDB/MySQL keep one connection above max_connections for SUPER: nothing to subtract.
        cursor.execute("SELECT @@max_connections")
        return int(cursor.fetchone()[0]), 0, "@@max_connections"


def connections_within_limit(context: ChecklistContext) -> Outcome:
    """Every process's pool at its most, plus the reserve, fits the server's max_connections."""
    if connection.vendor == "sqlite":
        return Outcome(PASS, "SQLite is a file, not a server: there is no connection limit to stay within")
    demand: dict[str, int] = dict(settings.APM_DATABASE_DEMAND)
    reserve = int(settings.APM_DATABASE_RESERVE)
    maximum, server_reserve, asked = _server_limits()
    total = sum(demand.values()) + reserve + server_reserve
    parts = " + ".join(f"{kind} {count}" for kind, count in demand.items())
    sum_text = f"{parts} + reserve {reserve}" + (
        f" + server's own {server_reserve}" if server_reserve else ""
    )
    if getattr(settings, "DATABASE_PGBOUNCER", False):
        return Outcome(
            WARN,
            f"behind PgBouncer: {sum_text} = {total} are its clients (max_client_conn), PostgreSQL sees its "
            f"pools; {asked} through it says {maximum}",
        )
    if total > maximum:
        return Outcome(
            FAIL,
            f"{sum_text} = {total} > {asked} {maximum}: raise max_connections, lower the processes "
            "(GUNICORN_WORKERS, APM_WORKER_PROCESSES) or DATABASE_POOL_MAX_SIZE, or put PgBouncer in front",
        )
    return Outcome(PASS, f"{sum_text} = {total} <= {asked} {maximum}")


def database_settings(context: ChecklistContext) -> Outcome:
    """Connections are reused: a pool on PostgreSQL, persistent connections on MariaDB, WAL on SQLite."""
    database = settings.DATABASES["default"]
    health = bool(database.get("CONN_HEALTH_CHECKS"))
    if connection.vendor == "postgresql":
        pool = database.get("OPTIONS", {}).get("pool")
        if not isinstance(pool, dict):
            return Outcome(FAIL, "no connection pool: every request would open a PostgreSQL connection")
        if database.get("CONN_MAX_AGE"):
            return Outcome(FAIL, f"CONN_MAX_AGE {database['CONN_MAX_AGE']} beside the pool (Django needs 0)")
        return Outcome(
            PASS if health else FAIL,
            f"this process's psycopg pool min {pool['min_size']} max {pool['max_size']}, "
            f"recycled after {pool['max_lifetime']} s, wait {pool['timeout']} s; "
            f"health checks {'on' if health else 'OFF'}",
        )
    if connection.vendor == "mysql":
        age = database.get("CONN_MAX_AGE") or 0
        ok = age != 0 and health
        return Outcome(
            PASS if ok else FAIL,
            f"persistent connections CONN_MAX_AGE {age} s, health checks {'on' if health else 'off'}"
            + ("" if ok else ": each request would open a connection"),
        )
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        mode = str(cursor.fetchone()[0]).lower()
    return Outcome(
        PASS if mode == "wal" else FAIL,
        f"SQLite journal_mode {mode}" + ("" if mode == "wal" else ": readers wait for every writer"),
    )


# --- Cache, static files, metrics ---------------------------------------------------------------------


def _without_password(location: object) -> str:
    text = str(location or "")
    parts = urlsplit(text)
    if parts.password:
        text = text.replace(f":{parts.password}@", ":***@")
    return text


def cache_reachable(context: ChecklistContext) -> Outcome:
    """The default cache is one every process shares (Redis) in production, and it answers."""
    config = settings.CACHES["default"]
    backend = str(config["BACKEND"])
    short = backend.rsplit(".", 1)[-1]
    # Redis (django-redis, Django's own, django-prometheus') or memcached; not "locmem", "filebased".
    shared = "redis" in backend.lower() or ".memcached." in backend
    if _production() and not shared:
        return Outcome(
            FAIL, f"{short} under the production settings: each process would cache alone; set REDIS_URL"
        )
    key, value = f"perf-checklist:{secrets.token_hex(8)}", secrets.token_hex(8)
    started = time.perf_counter()
    cache.set(key, value, 30)
    answered = cache.get(key)
    cache.delete(key)
    milliseconds = (time.perf_counter() - started) * 1000
    where = f"{short} {_without_password(config.get('LOCATION'))}".strip()
    if answered != value:
        return Outcome(FAIL, f"{where}: a value set was not read back (the server does not answer?)")
    trip = f"set/get/delete round trip {milliseconds:.1f} ms"
    if not shared:
        return Outcome(PASS, f"{where}, {trip}; the embedded default (production uses Redis: REDIS_URL)")
    return Outcome(PASS, f"{where}, {trip}")


def static_compressed(context: ChecklistContext) -> Outcome:
    """Collected static files have hashed names and .gz/.br copies beside them."""
    backend = str(settings.STORAGES["staticfiles"]["BACKEND"])
    storage_class = import_string(backend)
    hashed = issubclass(storage_class, ManifestFilesMixin)
    compressed = any("Compressed" in klass.__name__ for klass in storage_class.__mro__)
    short = backend.rsplit(".", 1)[-1]
    if not (hashed and compressed):
        lacking = " and ".join(
            word for word, ok in (("hashed", hashed), ("compressed", compressed)) if not ok
        )
        if not _production():
            return Outcome(
                WARN,
                f"{short}: not {lacking}; the embedded default serves static files through runserver "
                "(the production settings use whitenoise's CompressedManifestStaticFilesStorage)",
            )
        return Outcome(
            FAIL, f"{short}: not {lacking} (use whitenoise.storage.CompressedManifestStaticFilesStorage)"
        )
    manifest = Path(settings.STATIC_ROOT) / storage_class.manifest_name
    data, problem = _json_file(manifest)
    if data is None:
        return Outcome(FAIL, f"{problem}: run manage.py collectstatic")
    paths: dict[str, str] = data["paths"] if isinstance(data.get("paths"), dict) else {}
    texts = sorted(name for name in paths.values() if str(name).endswith((".css", ".js")))
    if not texts:
        return Outcome(FAIL, f"{manifest} lists no .css or .js file: run manage.py collectstatic")
    step = max(1, len(texts) // STATIC_SAMPLE)
    sample = texts[::step][:STATIC_SAMPLE]
    root = Path(settings.STATIC_ROOT)
    lacking_copies = [
        name
        for name in sample
        if not all((root / f"{name}{suffix}").is_file() for suffix in ("", ".gz", ".br"))
    ]
    if lacking_copies:
        return Outcome(
            FAIL,
            f"{len(lacking_copies)} of {len(sample)} sampled files lack their .gz/.br copy "
            f"(e.g. {lacking_copies[0]}): run manage.py collectstatic",
        )
    return Outcome(
        PASS,
        f"{short}; {manifest} lists {len(paths)} files; {len(sample)} sampled .css/.js have .gz and .br",
    )


def _host() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*":
            return host.lstrip(".")
    return "localhost"


def metrics_protected(context: ChecklistContext) -> Outcome:
    """/metrics is mounted and answers Prometheus' token only: 401 without it, 200 with it."""
    try:
        resolve("/metrics")
    except Resolver404:
        return Outcome(FAIL, "/metrics is not mounted (config.urls must include monitoring.urls)")
    token = str(settings.APM_METRICS_TOKEN or "")
    client = Client(HTTP_HOST=_host(), REMOTE_ADDR=OUTSIDE_ADDRESS, secure=True)
    without = client.get("/metrics").status_code
    if not token:
        networks = ", ".join(settings.APM_METRICS_ALLOWED_NETWORKS)
        if networks and without == 403:
            return Outcome(PASS, f"no token; admitted from {networks} only (403 from {OUTSIDE_ADDRESS})")
        if _production():
            return Outcome(FAIL, f"APM_METRICS_TOKEN is empty: /metrics answers {without} to everyone")
        return Outcome(
            WARN, f"APM_METRICS_TOKEN is empty: the embedded default serves /metrics to anyone ({without})"
        )
    with_token = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code
    evidence = f"/metrics {without} without the token, {with_token} with it"
    return Outcome(PASS if (without, with_token) == (401, 200) else FAIL, evidence)


# --- Alert rules, load report, deployment files -------------------------------------------------------


def alert_rules_tested(context: ChecklistContext) -> Outcome:
    """The alert rules' unit tests pass under promtool."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return Outcome(FAIL, "promtool not found: `make deploy-tools` installs it (Debian's prometheus)")
    try:
        result = subprocess.run(  # noqa: S603 (promtool, found on PATH, with our own file)
            [promtool, "test", "rules", str(context.alerts_test)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(FAIL, f"promtool test rules {context.alerts_test.name} ran past 120 s")
    output = (result.stdout + result.stderr).strip().splitlines()
    last = output[-1].strip() if output else ""
    if result.returncode != 0:
        failure = next((line.strip() for line in output if "FAILED" in line or "error" in line.lower()), last)
        return Outcome(
            FAIL, f"promtool test rules {context.alerts_test.name}: exit {result.returncode}, {failure}"
        )
    cases = len(yaml.safe_load(context.alerts_test.read_text()).get("tests") or [])
    return Outcome(
        PASS, f"promtool test rules {context.alerts_test.name}: {cases} test groups {last}".strip()
    )


def load_reports(directory: Path) -> Iterator[tuple[datetime, Path]]:
    """Each ``<scenario>/result.json`` under ``directory`` with the time it finished (mtime without one)."""
    for path in sorted(directory.glob("*/result.json")):
        data, _ = _json_file(path)
        moment = _moment(data.get("finished_at")) if data else None
        yield moment or datetime.fromtimestamp(path.stat().st_mtime, tz=UTC), path


def load_report(context: ChecklistContext) -> Outcome:
    """The newest load scenario's result.json (or --load-report) met its targets."""
    path = context.load_report
    if path is None:
        directory = Path(settings.APM_LOADTEST_DIR)
        newest = max(load_reports(directory), default=None)
        if newest is None:
            return Outcome(
                FAIL, f"no <scenario>/result.json under {directory}: run make loadtest SCENARIO=smoke"
            )
        path = newest[1]
    data, problem = _json_file(path)
    if data is None:
        return Outcome(FAIL, problem)
    figures = _load_figures(data)
    finished = _moment(data.get("finished_at"))
    problem = (
        f"{path}: {figures}"
        if isinstance(figures, str)
        else _finished_problem(path, finished, required=False)
    )
    if isinstance(figures, str) or problem:
        return Outcome(FAIL, problem)
    requests, errors, p95 = figures
    when = f"{finished:%Y-%m-%d %H:%M} UTC" if finished else "no finished_at"
    targets: dict[str, Any] = data["targets"] if isinstance(data.get("targets"), dict) else {}
    target_text = ", ".join(f"{key} {value}" for key, value in targets.items())
    evidence = (
        f"{data.get('scenario', path.parent.name)} ({when}): "
        f"{requests} requests, p95 {p95} ms, {errors} errors"
        + (f"; targets {target_text}" if target_text else "")
    )
    if data.get("passed") is not True:
        verdicts = data.get("verdicts")
        failed = [
            str(verdict.get("name"))
            for verdict in (verdicts if isinstance(verdicts, list) else [])
            if isinstance(verdict, dict) and verdict.get("passed") is False
        ]
        return Outcome(FAIL, f"{evidence}; failed{': ' + ', '.join(failed) if failed else ''} ({path})")
    if not requests:
        return Outcome(FAIL, f"{evidence}: a run that made no request proves nothing ({path})")
    return Outcome(PASS, evidence)


def _load_figures(data: dict[str, Any]) -> tuple[int, int, float | None] | str:
    """``(requests, errors, p95 in ms)`` of a load report, from its total or else added up over its
    endpoints; or what is wrong with them (a hand-edited or truncated file fails, naming the field)."""
    total = data.get("total", {})
    endpoints = data.get("endpoints", [])
    if not isinstance(total, dict):
        return "total is not an object"
    if not isinstance(endpoints, list) or not all(isinstance(endpoint, dict) for endpoint in endpoints):
        return "endpoints is not a list of objects"
    counts: dict[str, int] = {}
    for name in ("requests", "failures"):
        if name in total:
            count = _count(total[name])
            where = f"total.{name}"
        else:
            parts = [_count(endpoint.get(name) or 0) for endpoint in endpoints]
            count = None if None in parts else sum(part or 0 for part in parts)
            where = f"endpoints[].{name}"
        if count is None:
            return f"{where} is not a count"
        counts[name] = count
    given = [total.get("p95_ms")] if "p95_ms" in total else [e.get("p95_ms") or 0 for e in endpoints]
    latencies: list[Any] = [value for value in given if value is not None]  # null: not measured
    if any(isinstance(value, bool) or not isinstance(value, int | float) for value in latencies):
        return "p95_ms is not a number"
    p95 = max(latencies, default=None)
    if p95 is not None and not 0 <= p95 < float("inf"):
        return f"p95_ms is {p95}"
    return counts["requests"], counts["failures"], p95


def _dockerfile_instructions(path: Path) -> list[str]:
    """The instructions of a Dockerfile, continuation lines joined; ValueError naming a line that is none."""
    instructions: list[str] = []
    pending = ""
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        word = pending.split(None, 1)[0].upper()
        if word not in DOCKERFILE_INSTRUCTIONS:
            raise ValueError(f"{path.name} line {number}: {word!r} is not an instruction")
        instructions.append(word)
        pending = ""
    if pending:
        raise ValueError(f"{path.name} ends inside a continued instruction")
    first = next((word for word in instructions if word != "ARG"), None)
    if first != "FROM":
        raise ValueError(f"{path.name} does not start with FROM")
    return instructions


def _containers(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = document.get("spec") or {}
    template = (spec.get("jobTemplate") or {}).get("spec", spec).get("template") or {}
    yield from (template.get("spec") or {}).get("containers") or []


def deployment_files(context: ChecklistContext) -> Outcome:
    """The Dockerfile and every Kubernetes manifest parse; every container asks for and caps its resources."""
    root = context.deploy_root
    try:
        instructions = _dockerfile_instructions(root / "Dockerfile")
    except (OSError, ValueError) as error:
        return Outcome(FAIL, f"Dockerfile: {error}")
    manifests = sorted((root / "k8s").rglob("*.yaml"))
    documents = 0
    unbounded: list[str] = []
    for path in manifests:
        try:
            loaded = [document for document in yaml.safe_load_all(path.read_text()) if document]
        except yaml.YAMLError as error:
            return Outcome(FAIL, f"{path.relative_to(root)} is not YAML: {str(error).splitlines()[0]}")
        documents += len(loaded)
        for document in loaded:
            if not isinstance(document, dict):
                continue
            for container in _containers(document):
                resources = container.get("resources") or {}
                if not (resources.get("requests") and resources.get("limits")):
                    kind_name = f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"
                    unbounded.append(f"{kind_name} {container.get('name')}")
    if not manifests:
        return Outcome(FAIL, f"no manifest under {root / 'k8s'}")
    if unbounded:
        return Outcome(FAIL, f"containers without resource requests and limits: {', '.join(unbounded[:5])}")
    return Outcome(
        PASS,
        f"Dockerfile {len(instructions)} instructions ({instructions.count('FROM')} stages); "
        f"{len(manifests)} manifests, {documents} objects parse; every container has requests and limits "
        "(hadolint, kubernetes-validate, checkov: make deploy-check)",
    )


def deploy_system_checks(context: ChecklistContext) -> Outcome:
    """``manage.py check --deploy --fail-level WARNING`` passes on these settings."""
    output = StringIO()
    try:
        call_command("check", deploy=True, fail_level="WARNING", stdout=output, stderr=output)
    except SystemCheckError as error:
        ids = sorted(set(re.findall(r"\(([\w.]+\.[EW]\d+)\)", str(error))))
        return Outcome(FAIL, f"check --deploy: {', '.join(ids) or str(error).splitlines()[0]}")
    summary = output.getvalue().strip().splitlines()
    return Outcome(PASS, f"check --deploy --fail-level WARNING: {summary[-1] if summary else 'no issues'}")


# The checklist, in the order the table prints it: (name, title, check).
CHECKS: list[tuple[str, str, Callable[[ChecklistContext], Outcome]]] = [
    ("indexes_present", "Indexes declared exist", indexes_present),
    ("indexes_used", "Indexes of big tables used", indexes_used),
    ("hot_queries", "Hot queries analysed", hot_queries),
    ("database_settings", "Connections reused", database_settings),
    ("connections", "Pools within max_connections", connections_within_limit),
    ("cache", "Shared cache reachable", cache_reachable),
    ("static_files", "Static files hashed, compressed", static_compressed),
    ("metrics", "Metrics exposed, protected", metrics_protected),
    ("alert_rules", "Alert rules tested", alert_rules_tested),
    ("load_report", "Latest load report passed", load_report),
    ("deployment_files", "Deployment files valid", deployment_files),
    ("check_deploy", "Deploy system checks pass", deploy_system_checks),
]


def checklist_run(
    *, context: ChecklistContext | None = None, only: list[str] | None = None
) -> list[ChecklistItem]:
    """Run the checks (``only`` those named) and return one item each; a check that raises is a FAIL."""
    context = context or ChecklistContext()
    items = []
    for name, title, check in CHECKS:
        if only and name not in only:
            continue
        try:
            outcome = check(context)
        except Exception as error:  # one broken probe fails its item, not the whole checklist
            outcome = Outcome(FAIL, f"{type(error).__name__}: {error}")
        items.append(ChecklistItem(name, title, outcome.status, outcome.evidence))
    return items
