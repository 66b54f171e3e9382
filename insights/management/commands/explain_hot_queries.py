"""``manage.py explain_hot_queries``: the PostgreSQL plans of the hot queries (insights.hot_queries),
checked, and written to ``APM_PERF_DIR/hot-queries.json``.

    manage.py explain_hot_queries                     # the configured database's data, read-only
    manage.py explain_hot_queries --generate small    # a generated 1/20,000 slice in a scratch database (CI)
    manage.py explain_hot_queries --generate large    # a 1/1000 slice: 100,000 commits, 1M file changes

Fails (exit 1) when a big table is read by a Seq Scan, a claimed index is not used, or a plan node's row
estimate is off by more than 100 times.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone
from psycopg.conninfo import make_conninfo

from insights.hot_queries import NothingToExplain, QueryCheck, hot_queries, query_check, sample_pick
from insights.scale_slice import (
    CHUNK_COMMITS,
    QUICK_SLICE,
    SETTLED_TABLES,
    ScratchDatabaseRefused,
    Slice,
    scratch_database_claim,
    scratch_database_drop,
    slice_autovacuum_reset,
    slice_fill,
    slice_of_fraction,
)
from repos.models import Repository

OWNER = "manage.py explain_hot_queries"
# The generated datasets: "small" fills in seconds (CI), "large" is the 1/1000 slice docs/scale.md
# plans from (100,000 commits, a million file changes; minutes).
DATASETS = {"small": QUICK_SLICE, "large": slice_of_fraction(0.001)}


class Command(BaseCommand):
    help = (
        "EXPLAIN (ANALYZE, BUFFERS) every hot query (lists, dashboards, analytics, ingestion's upserts) and "
        "fail when a big table is read by a Seq Scan, a claimed index is not used or a row estimate is "
        "off by more than 100x. Without --generate: the configured database's data, read-only. "
        "PostgreSQL only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--generate",
            choices=sorted(DATASETS),
            help="Explain on a generated slice in a scratch database: small (CI, seconds), large (minutes).",
        )
        parser.add_argument(
            "--fraction", type=float, help="Explain on a generated slice of this share of the full size."
        )
        parser.add_argument(
            "--database",
            dest="scratch",
            help="With --generate: the scratch database (default: the configured one's name + _hot_queries).",
        )
        parser.add_argument("--keep", action="store_true", help="Keep the scratch database.")
        parser.add_argument("--json", type=Path, help="Also write the results to this file.")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError(
                f"explain_hot_queries needs PostgreSQL (EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)); the "
                f"configured database is {connection.vendor}."
            )
        size = self._slice(options)
        if options["json"] is not None and not options["json"].parent.is_dir():
            raise CommandError(f"--json {options['json']}: directory {options['json'].parent} does not exist")
        if options["json"] is not None and options["json"].is_dir():
            raise CommandError(f"--json {options['json']} is a directory: name the file to write")
        started = time.perf_counter()
        if size is None:
            dataset = "current data"
            checks, database = self._checks(repository=None, chunk_size=CHUNK_COMMITS, dataset=dataset)
        else:
            dataset = f"generated 1/{1 / size.fraction:,.0f}: {size.commits:,} commits"
            checks, database = self._generated(size, options, dataset)
        seconds = time.perf_counter() - started
        self._report(checks)
        result = {
            "finished_at": timezone.now().isoformat(),
            "database": database,
            "seconds": round(seconds, 2),
            "passed": all(check.passed for check in checks),
            "queries": [{**asdict(check), "passed": check.passed} for check in checks],
        }
        for path in [Path(settings.APM_PERF_DIR) / "hot-queries.json", options["json"]]:
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(result, indent=2, default=str))
                except OSError as error:
                    raise CommandError(f"cannot write the results to {path}: {error}") from None
        failed = [check for check in checks if not check.passed]
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(checks)} hot queries failed:\n"
                + "\n".join(f"  {check.name}: {'; '.join(check.problems)}" for check in failed)
            )
        self.stdout.write(f"all {len(checks)} hot queries passed ({dataset}, {seconds:.1f} s)")

    def _slice(self, options: dict[str, Any]) -> Slice | None:
        if options["fraction"] is not None:
            if options["generate"]:
                raise CommandError("give --generate or --fraction, not both")
            try:
                return slice_of_fraction(options["fraction"])
            except ValueError as error:
                raise CommandError(f"--fraction: {error}") from None
        if options["generate"]:
            return DATASETS[options["generate"]]
        for option in ("scratch", "keep"):
            if options[option]:
                raise CommandError(f"--{'database' if option == 'scratch' else option} goes with --generate")
        return None

    def _checks(
        self, *, repository: Repository | None, chunk_size: int, dataset: str
    ) -> tuple[list[QueryCheck], dict[str, Any]]:
        """The checks of every hot query on the database connected now, and what that database is."""
        try:
            sample = sample_pick(repository=repository, chunk_size=chunk_size)
        except NothingToExplain as error:
            raise CommandError(f"{error}; --generate small explains on a generated dataset") from None
        return [query_check(query) for query in hot_queries(sample)], self._database(dataset)

    def _generated(
        self, size: Slice, options: dict[str, Any], dataset: str
    ) -> tuple[list[QueryCheck], dict[str, Any]]:
        """Fill a scratch database with ``size``'s slice and check the plans there; the configured
        database is left alone, and the default connection points back at it afterwards."""
        database = connection.settings_dict
        name = options["scratch"] or f"{database['NAME']}_hot_queries"
        server = make_conninfo(
            host=database.get("HOST") or "",
            port=str(database.get("PORT") or ""),
            user=database.get("USER") or "",
            password=database.get("PASSWORD") or "",
            dbname="postgres",
        )
        try:
            claim = scratch_database_claim(server=server, name=name, owner=OWNER)
        except ScratchDatabaseRefused as error:
            raise CommandError(str(error)) from None
        except psycopg.OperationalError as error:
            raise CommandError(f"cannot reach PostgreSQL to create {name}: {error}") from None
        original = database["NAME"]
        self._connect(name)
        try:
            started = time.perf_counter()
            call_command("migrate", verbosity=0, interactive=False)
            migrated = time.perf_counter() - started
            repository_ids, fill = slice_fill(size)
            with connection.cursor() as cursor:
                cursor.execute("RESET ALL")  # the fill's work_mem and synchronous_commit
                # As autovacuum leaves a settled database: statistics, and the visibility map that
                # index-only scans rely on.
                for table in SETTLED_TABLES:
                    cursor.execute(f"VACUUM (ANALYZE) {table}")
            slice_autovacuum_reset()
            filled = time.perf_counter() - started - migrated
            self.stdout.write(
                f"{name}: migrated in {migrated:.1f} s, filled in {filled:.1f} s ("
                + ", ".join(f"{step.table} {step.rows:,}" for step in fill)
                + ")"
            )
            repository = Repository.objects.get(pk=repository_ids[len(repository_ids) // 2])
            # A chunk of at most a fiftieth of the slice: at full size no chunk is a large share of a table.
            return self._checks(
                repository=repository, chunk_size=min(CHUNK_COMMITS, size.commits // 50), dataset=dataset
            )
        finally:
            self._connect(original)
            if not options["keep"]:
                scratch_database_drop(server=server, name=name)
            claim.close()

    def _connect(self, name: str) -> None:
        """Point the default connection at database ``name`` (as the test runner does for its database)."""
        connection.close()
        cast("Any", connection).close_pool()  # PostgreSQL's wrapper: its pool holds the old database
        connection.settings_dict["NAME"] = name

    def _database(self, dataset: str) -> dict[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database(), pg_database_size(current_database()), version()")
            name, size, version = cursor.fetchone()
        return {
            "vendor": connection.vendor,
            "version": version,
            "name": name,
            "size_bytes": size,
            "dataset": dataset,
        }

    def _report(self, checks: list[QueryCheck]) -> None:
        for check in checks:
            verdict = "PASS" if check.passed else "FAIL"
            self.stdout.write(
                f"{verdict}  {check.name}\n"
                f"      caller: {check.caller}\n"
                f"      scans: {', '.join(check.scans) or '-'}"
                + (f"\n      without seq scans: {', '.join(check.claim_scans)}" if check.share_bound else "")
                + (f"\n      reads whole tables: {check.full_read}" if check.full_read else "")
                + f"\n      {check.rows:,} rows, {check.buffers:,} buffers, {check.execution_ms:.2f} ms, "
                f"worst estimate {check.worst_estimate:,.1f}x ({check.worst_estimate_node})"
            )
            for problem in check.problems:
                self.stdout.write(f"      problem: {problem}")
