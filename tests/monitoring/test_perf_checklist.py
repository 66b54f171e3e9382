"""manage.py perf_checklist (monitoring.checklist): each item passing and failing against the real
database, cache, files and promtool; the command's output and exit status."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from monitoring import checklist
from monitoring.checklist import FAIL, PASS, SKIP, WARN, ChecklistContext
from projects.models import Project
from tests.factories import ProjectFactory
from tests.services import UNREACHABLE_REDIS

COMPRESSED_MANIFEST = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}


def hot_queries_write(directory: Path, *, passed: bool = True, age: timedelta = timedelta(hours=1)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "hot-queries.json"
    path.write_text(
        json.dumps(
            {
                "finished_at": (timezone.now() - age).isoformat(),
                "database": "postgresql, small",
                "passed": passed,
                "queries": [
                    {"name": "task_list", "passed": True},
                    {"name": "commit_list", "passed": passed},
                ],
            }
        )
    )
    return path


def load_result_write(
    directory: Path, scenario: str, *, passed: bool, age: timedelta, p95: float = 42.0, failures: int = 0
) -> Path:
    path = directory / scenario / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "scenario": scenario,
                "finished_at": (timezone.now() - age).isoformat(),
                "passed": passed,
                "targets": {"p95_ms": 100, "errors": 0},
                "verdicts": [{"name": "p95 < 100 ms", "passed": p95 < 100, "evidence": f"p95 {p95} ms"}],
                "endpoints": [{"name": "/dashboard", "method": "GET", "requests": 900, "failures": failures}],
                "total": {"requests": 1200, "failures": failures, "p95_ms": p95},
            }
        )
    )
    return path


def production(settings: Any) -> None:
    settings.APM_PRODUCTION = True
    settings.APM_METRICS_OPEN_WITHOUT_CREDENTIALS = False


# --- indexes ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_declared_index_exists_in_the_migrated_database():
    outcome = checklist.indexes_present(ChecklistContext())

    declared, _ = checklist.declared_indexes()
    assert outcome.status == PASS, outcome.evidence
    assert f"all {len(declared)} declared indexes" in outcome.evidence
    assert any(index.name == "idx_projects_status" for index in declared)


@pytest.mark.django_db(transaction=True)
def test_an_index_dropped_from_the_database_fails_by_its_name():
    # DDL commits on MariaDB: a test of its own, outside the test's transaction, and the index put back.
    index = next(index for index in Project._meta.indexes if index.name == "idx_projects_status")
    with connection.schema_editor() as editor:
        editor.remove_index(Project, index)
    try:
        outcome = checklist.indexes_present(ChecklistContext())
    finally:
        with connection.schema_editor() as editor:
            editor.add_index(Project, index)

    assert outcome.status == FAIL
    assert "projects.idx_projects_status" in outcome.evidence
    assert "run migrate" in outcome.evidence
    assert checklist.indexes_present(ChecklistContext()).status == PASS


@pytest.mark.django_db
def test_index_use_on_a_young_database_is_a_warning_not_a_failure(settings):
    outcome = checklist.indexes_used(ChecklistContext())

    if connection.vendor != "postgresql":
        assert outcome.status == SKIP
        assert "pg_stat_user_indexes" in outcome.evidence
        return
    # The test database's tables hold a handful of rows: PostgreSQL reads them whole, scans say nothing.
    assert outcome.status == WARN
    assert "10,000 rows yet" in outcome.evidence


@pytest.mark.django_db(transaction=True)
def test_index_use_of_a_big_table_passes_once_its_index_is_scanned(settings):
    if connection.vendor != "postgresql":
        assert checklist.indexes_used(ChecklistContext()).status == SKIP
        return
    declared, _ = checklist.declared_indexes()
    tables = {index.table for index in declared if index.name}

    def sizes() -> dict[str, int]:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE projects")
            cursor.execute(
                "SELECT t.relname, GREATEST(t.n_live_tup, c.reltuples::bigint) "
                "FROM pg_stat_user_tables t JOIN pg_class c ON c.oid = t.relid"
            )
            return {table: rows for table, rows in cursor.fetchall() if table in tables}

    # The projects table made the only big one: the bound sits just above every other declared table.
    others = max(rows for table, rows in sizes().items() if table != "projects")
    ProjectFactory.create_batch(others + 1)
    assert sizes()["projects"] > others
    settings.APM_PERF_HOT_TABLE_ROWS = others + 1
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SELECT count(*) FROM projects WHERE status = 'active'")
        cursor.execute("RESET enable_seqscan")
        # This backend's counts reach the shared statistics at its next transaction's end (PostgreSQL 15).
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'idx_projects_status'")
        assert cursor.fetchone()[0] >= 1

    outcome = checklist.indexes_used(ChecklistContext())

    assert outcome.status == PASS, outcome.evidence
    assert f"all 1 declared indexes on 1 tables of {others + 1:,}+ rows scanned" in outcome.evidence


# --- hot queries --------------------------------------------------------------------------------------


def test_hot_queries_pass_when_recent_and_passed(settings, tmp_path):
    settings.APM_PERF_DIR = tmp_path
    hot_queries_write(tmp_path)

    outcome = checklist.hot_queries(ChecklistContext())

    assert outcome.status == PASS
    assert "2 plans passed on postgresql, small" in outcome.evidence


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("absent", "run manage.py explain_hot_queries"),
        ("failed", "says failed"),
        ("stale", "older than APM_PERF_MAX_AGE_DAYS (7)"),
        ("garbage", "not readable JSON"),
    ],
)
def test_hot_queries_fail_when_absent_failed_stale_or_unreadable(settings, tmp_path, kind, expected):
    settings.APM_PERF_DIR = tmp_path
    settings.APM_PERF_MAX_AGE_DAYS = 7
    if kind == "failed":
        hot_queries_write(tmp_path, passed=False)
    elif kind == "stale":
        hot_queries_write(tmp_path, age=timedelta(days=8))
    elif kind == "garbage":
        (tmp_path / "hot-queries.json").write_text("{not json")

    outcome = checklist.hot_queries(ChecklistContext())

    assert outcome.status == FAIL
    assert expected in outcome.evidence
    if kind == "failed":
        assert "commit_list" in outcome.evidence


def test_hot_queries_from_the_future_fail_and_times_are_shown_in_utc(settings, tmp_path):
    # A clock far ahead (or a hand-edited file) would pass APM_PERF_MAX_AGE_DAYS for good.
    settings.APM_PERF_DIR = tmp_path
    hot_queries_write(tmp_path, age=-timedelta(days=30))
    future = checklist.hot_queries(ChecklistContext())
    path = hot_queries_write(tmp_path)
    data = json.loads(path.read_text())
    data["finished_at"] = (timezone.now() - timedelta(hours=1)).astimezone(timezone.get_fixed_timezone(840))
    path.write_text(json.dumps({**data, "finished_at": data["finished_at"].isoformat()}))
    zoned = checklist.hot_queries(ChecklistContext())

    assert future.status == FAIL
    assert "finished in the future" in future.evidence
    assert zoned.status == PASS
    assert f"{timezone.now() - timedelta(hours=1):%Y-%m-%d %H:%M} UTC" in zoned.evidence


# --- connections --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_pools_fit_the_servers_max_connections():
    outcome = checklist.connections_within_limit(ChecklistContext())

    assert outcome.status == PASS, outcome.evidence
    if connection.vendor == "sqlite":
        assert "no connection limit" in outcome.evidence
    else:
        assert "<= " in outcome.evidence
        assert "max_connections" in outcome.evidence


@pytest.mark.django_db
def test_pools_bigger_than_max_connections_fail(settings):
    settings.APM_DATABASE_DEMAND = {"web": 10 * 64, "workers": 10 * 32, "beat": 1}

    outcome = checklist.connections_within_limit(ChecklistContext())

    if connection.vendor == "sqlite":
        # A file has no limit however many processes open it: the honest answer stays a pass.
        assert outcome.status == PASS
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SHOW max_connections" if connection.vendor == "postgresql" else "SELECT @@max_connections"
        )
        maximum = int(cursor.fetchone()[0])
    assert maximum < 961 + 8, "the server allows more than this test's demand"
    assert outcome.status == FAIL
    assert "web 640 + workers 320 + beat 1 + reserve 8" in outcome.evidence
    assert (
        f"> {'SHOW max_connections' if connection.vendor == 'postgresql' else '@@max_connections'} {maximum}"
        in (outcome.evidence)
    )


@pytest.mark.django_db
# Only the check reads the changed dict; the open connection keeps the settings it was made with.
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_database_settings_reuse_connections(settings):
    outcome = checklist.database_settings(ChecklistContext())
    assert outcome.status == PASS, outcome.evidence

    database = {**settings.DATABASES["default"], "OPTIONS": {}, "CONN_MAX_AGE": 0}
    settings.DATABASES = {**settings.DATABASES, "default": database}
    broken = checklist.database_settings(ChecklistContext())
    if connection.vendor == "postgresql":
        assert broken.status == FAIL
        assert "no connection pool" in broken.evidence
    elif connection.vendor == "mysql":
        assert broken.status == FAIL
        assert "CONN_MAX_AGE 0" in broken.evidence
    else:  # SQLite's answer is the file's journal mode, which the settings do not change once open
        assert broken.status == PASS
        assert "journal_mode wal" in broken.evidence


# --- cache --------------------------------------------------------------------------------------------


def test_the_configured_cache_answers_a_round_trip(settings):
    outcome = checklist.cache_reachable(ChecklistContext())

    assert outcome.status == PASS, outcome.evidence
    assert "round trip" in outcome.evidence
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        assert "the embedded default" in outcome.evidence


def test_a_local_memory_cache_fails_under_the_production_settings(settings):
    production(settings)
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

    outcome = checklist.cache_reachable(ChecklistContext())

    assert outcome.status == FAIL
    assert "LocMemCache under the production settings" in outcome.evidence


def test_a_redis_that_does_not_answer_fails(settings):
    production(settings)
    settings.CACHES = UNREACHABLE_REDIS
    try:
        outcome = checklist.cache_reachable(ChecklistContext())
    finally:
        caches["default"].close()

    assert outcome.status == FAIL
    assert "redis://127.0.0.1:1/0: a value set was not read back" in outcome.evidence


# --- static files -------------------------------------------------------------------------------------


def static_collected(root: Path, *, brotli: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for number in range(3):
        for suffix in ("css", "js"):
            name = f"app{number}.{suffix}"
            hashed = f"app{number}.0123456789ab.{suffix}"
            paths[name] = hashed
            for copy in ("", ".gz", *((".br",) if brotli else ())):
                (root / f"{hashed}{copy}").write_text("body { color: black; }\n" * 100)
    (root / "staticfiles.json").write_text(json.dumps({"paths": paths, "version": "1.1"}))


def test_static_files_hashed_with_compressed_copies_pass(settings, tmp_path):
    production(settings)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": COMPRESSED_MANIFEST}
    settings.STATIC_ROOT = str(tmp_path)
    static_collected(tmp_path)

    outcome = checklist.static_compressed(ChecklistContext())

    assert outcome.status == PASS, outcome.evidence
    assert "lists 6 files; 6 sampled .css/.js have .gz and .br" in outcome.evidence


def test_static_files_fail_without_a_manifest_or_without_brotli_copies(settings, tmp_path):
    production(settings)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": COMPRESSED_MANIFEST}
    settings.STATIC_ROOT = str(tmp_path / "absent")

    absent = checklist.static_compressed(ChecklistContext())
    settings.STATIC_ROOT = str(tmp_path / "gzip-only")
    static_collected(tmp_path / "gzip-only", brotli=False)
    gzip_only = checklist.static_compressed(ChecklistContext())

    assert absent.status == FAIL
    assert "staticfiles.json does not exist: run manage.py collectstatic" in absent.evidence
    assert gzip_only.status == FAIL
    assert "6 of 6 sampled files lack their .gz/.br copy" in gzip_only.evidence


def test_plain_static_storage_fails_in_production_and_warns_on_the_embedded_default(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
    embedded = checklist.static_compressed(ChecklistContext())
    production(settings)
    deployed = checklist.static_compressed(ChecklistContext())

    assert embedded.status == WARN
    assert deployed.status == FAIL
    assert "ManifestStaticFilesStorage: not compressed" in deployed.evidence


# --- metrics ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_answer_401_without_the_token_and_200_with_it(settings):
    production(settings)
    settings.APM_METRICS_TOKEN = "perf-checklist-test-token-0123456789"

    outcome = checklist.metrics_protected(ChecklistContext())

    assert outcome.status == PASS, outcome.evidence
    assert outcome.evidence == "/metrics 401 without the token, 200 with it"


@pytest.mark.django_db
def test_metrics_without_a_token_fail_in_production(settings):
    production(settings)
    settings.APM_METRICS_TOKEN = ""
    settings.APM_METRICS_ALLOWED_NETWORKS = []

    outcome = checklist.metrics_protected(ChecklistContext())

    assert outcome.status == FAIL
    assert "APM_METRICS_TOKEN is empty: /metrics answers 403" in outcome.evidence


# --- alert rules --------------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_or_fail_naming_make_deploy_tools(tmp_path):
    outcome = checklist.alert_rules_tested(ChecklistContext())

    if shutil.which("promtool"):
        assert outcome.status == PASS, outcome.evidence
        assert "SUCCESS" in outcome.evidence
        broken = tmp_path / "alerts_test.yml"
        # The real rules, and an expectation they do not meet: an alert that does not exist, firing.
        rules = Path(checklist.__file__).parent / "alerts.yml"
        broken.write_text(
            f"rule_files: [{rules}]\nevaluation_interval: 1m\n"
            "tests:\n  - interval: 1m\n    input_series: []\n"
            "    alert_rule_test:\n      - eval_time: 1m\n        alertname: ApmNoSuchAlert\n"
            "        exp_alerts: [{exp_labels: {severity: page}}]\n"
        )
        failing = checklist.alert_rules_tested(ChecklistContext(alerts_test=broken))
        assert failing.status == FAIL
        assert "exit 1" in failing.evidence
    else:
        assert outcome.status == FAIL
        assert "`make deploy-tools`" in outcome.evidence


def test_alert_rules_without_promtool_fail_naming_make_deploy_tools(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))

    outcome = checklist.alert_rules_tested(ChecklistContext())

    assert outcome.status == FAIL
    assert outcome.evidence == "promtool not found: `make deploy-tools` installs it (Debian's prometheus)"


# --- load report --------------------------------------------------------------------------------------


def test_the_newest_load_report_is_judged(settings, tmp_path):
    settings.APM_LOADTEST_DIR = tmp_path
    load_result_write(tmp_path, "load", passed=False, age=timedelta(days=2), p95=180.0)
    load_result_write(tmp_path, "smoke", passed=True, age=timedelta(hours=1), p95=37.5)

    outcome = checklist.load_report(ChecklistContext())

    assert outcome.status == PASS, outcome.evidence
    assert "smoke" in outcome.evidence
    assert "1200 requests, p95 37.5 ms, 0 errors" in outcome.evidence
    assert "targets p95_ms 100, errors 0" in outcome.evidence


def test_a_failed_newest_load_report_or_none_fails(settings, tmp_path):
    settings.APM_LOADTEST_DIR = tmp_path
    none = checklist.load_report(ChecklistContext())
    load_result_write(tmp_path, "smoke", passed=True, age=timedelta(days=1))
    load_result_write(tmp_path, "load", passed=False, age=timedelta(hours=1), p95=180.0, failures=3)

    newest = checklist.load_report(ChecklistContext())
    named = checklist.load_report(ChecklistContext(load_report=tmp_path / "smoke" / "result.json"))

    assert none.status == FAIL
    assert "run make loadtest SCENARIO=smoke" in none.evidence
    assert newest.status == FAIL
    assert "load (" in newest.evidence
    assert "p95 180.0 ms, 3 errors" in newest.evidence
    assert "failed: p95 < 100 ms" in newest.evidence
    assert named.status == PASS


# --- deployment files ---------------------------------------------------------------------------------


def test_the_dockerfile_and_manifests_parse_with_resources_on_every_container():
    outcome = checklist.deployment_files(ChecklistContext())

    assert outcome.status == PASS, outcome.evidence
    assert "make deploy-check" in outcome.evidence


@pytest.mark.parametrize(
    ("dockerfile", "manifest", "expected"),
    [
        ("FROM python:3.12\nRUNN pip install\n", "kind: ConfigMap\n", "'RUNN' is not an instruction"),
        ("FROM python:3.12\n", "kind: [ConfigMap\n", "k8s/app.yaml is not YAML"),
        (
            "FROM python:3.12\n",
            "kind: Deployment\nmetadata: {name: web}\n"
            "spec: {template: {spec: {containers: [{name: web}]}}}\n",
            "without resource requests and limits: Deployment/web web",
        ),
    ],
)
def test_broken_deployment_files_fail(tmp_path, dockerfile, manifest, expected):
    (tmp_path / "k8s").mkdir()
    (tmp_path / "Dockerfile").write_text(dockerfile)
    (tmp_path / "k8s" / "app.yaml").write_text(manifest)

    outcome = checklist.deployment_files(ChecklistContext(deploy_root=tmp_path))

    assert outcome.status == FAIL
    assert expected in outcome.evidence


@pytest.mark.django_db
def test_deploy_system_checks_fail_on_the_test_settings_and_pass_on_production_ones(settings):
    failing = checklist.deploy_system_checks(ChecklistContext())

    production(settings)
    settings.DEBUG = False
    settings.SECRET_KEY = os.urandom(32).hex() + "-perf-checklist"
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.APM_METRICS_TOKEN = "perf-checklist-test-token-0123456789"
    settings.APM_MEDIA_ROOT_SET = True
    passing = checklist.deploy_system_checks(ChecklistContext())

    assert failing.status == FAIL
    assert "security.W004" in failing.evidence
    assert passing.status == PASS, passing.evidence


# --- the command --------------------------------------------------------------------------------------


def test_the_command_exits_non_zero_on_a_failure_and_zero_otherwise(settings, tmp_path):
    settings.APM_PERF_DIR = tmp_path
    with pytest.raises(CommandError, match="1 of 1 checklist items failed: hot_queries"):
        call_command("perf_checklist", "--only", "hot_queries", stdout=StringIO())

    hot_queries_write(tmp_path)
    output = StringIO()
    call_command("perf_checklist", "--only", "hot_queries", "deployment_files", stdout=output)

    lines = output.getvalue().splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["Hot", "queries", "analysed"],
        ["Deployment", "files", "valid"],
    ]
    assert all("PASS" in line for line in lines)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"endpoints": 5, "total": None}, "endpoints is not a list of objects"),
        ({"endpoints": [{"failures": "abc"}], "total": None}, "endpoints[].failures is not a count"),
        ({"total": {"requests": "many", "failures": 0}}, "total.requests is not a count"),
        ({"total": {"requests": 10, "failures": 0, "p95_ms": "fast"}}, "p95_ms is not a number"),
        ({"total": {"requests": 10, "failures": 0, "p95_ms": float("nan")}}, "p95_ms is nan"),
        (
            {"total": {"requests": 0, "failures": 0, "p95_ms": 1.0}},
            "a run that made no request proves nothing",
        ),
        ({"total": None, "endpoints": None}, "a run that made no request proves nothing"),
        ({"finished_at": "9999-12-31T00:00:00"}, "finished in the future"),
        ({"finished_at": "9999-12-31T23:00:00-05:00"}, "finished in the future"),  # year 10000 in UTC
        ({"passed": False, "verdicts": 7}, "; failed ("),
    ],
)
def test_a_malformed_load_report_fails_naming_what_is_wrong(settings, tmp_path, change, expected):
    settings.APM_LOADTEST_DIR = tmp_path
    path = load_result_write(tmp_path, "smoke", passed=True, age=timedelta(hours=1))
    data = {**json.loads(path.read_text()), **change}
    path.write_text(json.dumps({key: value for key, value in data.items() if value is not None}))

    outcome = checklist.load_report(ChecklistContext())

    assert outcome.status == FAIL
    assert expected in outcome.evidence
    assert "Error" not in outcome.evidence  # a sentence, not an exception's name


def test_a_load_report_nested_deeper_than_python_reads_fails_as_unreadable(settings, tmp_path):
    settings.APM_LOADTEST_DIR = tmp_path
    path = load_result_write(tmp_path, "smoke", passed=True, age=timedelta(hours=1))
    path.write_text("[" * 100_000 + "]" * 100_000)

    outcome = checklist.load_report(ChecklistContext())

    assert outcome.status == FAIL
    assert "is not readable JSON" in outcome.evidence


def test_the_command_prints_json_and_refuses_a_missing_load_report(settings, tmp_path):
    load_result_write(tmp_path, "smoke", passed=True, age=timedelta(hours=1))
    output = StringIO()
    call_command(
        "perf_checklist",
        "--json",
        "--only",
        "load_report",
        "--load-report",
        str(tmp_path / "smoke" / "result.json"),
        stdout=output,
    )

    body = json.loads(output.getvalue())
    assert body["passed"] is True
    assert [item["name"] for item in body["items"]] == ["load_report"]
    assert body["items"][0]["status"] == PASS
    with pytest.raises(CommandError, match=r"--load-report .*absent\.json: no such file"):
        call_command("perf_checklist", "--load-report", str(tmp_path / "absent.json"))
