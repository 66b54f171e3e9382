"""``manage.py seed_demo``: a believable demo portfolio and an admin login, on the configured database.

Every project, membership, task, assignment, dependency and status change is made through the services,
so the demo data carries the same history (``TaskEvent`` rows with source ``batch``) as real work would;
that history is then spread over the weeks before today (demo.history) and each project's health is
recorded. Safe to run on every ``make run``: what exists is kept, the admin's password included.
"""

from __future__ import annotations

import random
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from demo.builder import ProjectBuilder
from demo.data import (
    ADMIN_USERNAME,
    DEFAULT_PASSWORD,
    DEFAULT_SEED,
    DEMO_PROJECT_KEYS,
    DEMO_PROJECTS,
    DEMO_USERNAMES,
    DEMO_USERS,
    Status,
)
from demo.management.commands.demo_login import login_write
from demo.selectors import demo_login
from demo.services import demo_admin_ensure, demo_health_record
from projects.models import Project
from projects.services import project_cache_invalidate
from tasks.models import Task, TaskDependency


class Command(BaseCommand):
    """Seed the demo portfolio (skipped when present) and ensure the demo admin account."""

    help = (
        "Create a demo portfolio (projects, users, tasks with history) and an admin account. "
        "Running it again changes nothing; --reset rebuilds the demo data, --reset-password sets the "
        "admin password again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Random seed (default 42).")
        parser.add_argument(
            "--password",
            help=(
                f"Password of the '{ADMIN_USERNAME}' account when it is created (default "
                f"{DEFAULT_PASSWORD}); an existing account keeps its own unless --reset-password is given."
            ),
        )
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help=f"Set the password of an existing '{ADMIN_USERNAME}' too (to --password or the demo one).",
        )
        parser.add_argument(
            "--no-login",
            action="store_true",
            help="Leave the admin login out of the output (make run prints it last, with demo_login).",
        )
        parser.add_argument(
            "--reset", action="store_true", help="Delete the demo projects and users, then rebuild them."
        )
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="Run even though DEBUG is off (a staging or demo server).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["allow_production"]:
            raise CommandError(
                "seed_demo writes demo data and an admin account with a known password, so it refuses "
                "to run with DEBUG off. Pass --allow-production if this database really is a demo or "
                "staging one."
            )
        password: str | None = options["password"]
        if password == "":
            raise CommandError("--password cannot be empty.")
        started = time.monotonic()
        with transaction.atomic():
            if options["reset"]:
                self._reset()
            # A demo project being deleted (projects.deletion) keeps its key until its rows are gone: it
            # is neither rebuilt nor counted as present until then.
            existing = set(
                Project.all_objects.filter(key__in=DEMO_PROJECT_KEYS).values_list("key", flat=True)
            )
            deleting = sorted(
                Project.all_objects.filter(
                    key__in=DEMO_PROJECT_KEYS, deleting_since__isnull=False
                ).values_list("key", flat=True)
            )
            missing = [spec for spec in DEMO_PROJECTS if spec.key not in existing]
            if missing:
                users = self._ensure_users()
                for spec in missing:
                    # One generator per project: a project's content does not depend on which others
                    # had to be built in this run. (Not for security, hence S311.)
                    rng = random.Random(f"{options['seed']}:{spec.key}")  # noqa: S311
                    ProjectBuilder(spec=spec, users=users, rng=rng).build()
            password_set = demo_admin_ensure(password=password, reset_password=options["reset_password"])
            assessed = demo_health_record()
        elapsed = time.monotonic() - started
        if deleting:
            self.stdout.write(
                self.style.WARNING(
                    f"Demo project(s) {', '.join(deleting)} are being deleted: run seed_demo again once "
                    "their deletion is over to build them anew."
                )
            )
        if missing:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Built {len(missing)} demo project(s) in {elapsed:.1f}s (seed {options['seed']})."
                )
            )
        else:
            self.stdout.write(
                self.style.WARNING(
                    "Demo portfolio already present: nothing rebuilt (use --reset to rebuild)."
                )
            )
        if password is not None and password_set is None:
            self.stdout.write(
                self.style.WARNING(
                    f"The '{ADMIN_USERNAME}' account exists: its password was left as it is "
                    "(--reset-password sets it)."
                )
            )
        if assessed:
            self.stdout.write(f"Health recorded for {', '.join(assessed)}.")
        self._summary()
        if not options["no_login"]:
            login_write(demo_login(password_set=password_set), stdout=self.stdout, style=self.style)
        if not settings.DEBUG:
            self.stdout.write(
                self.style.WARNING(
                    f"DEBUG is off: change the '{ADMIN_USERNAME}' password if others can reach this site."
                )
            )

    def _reset(self) -> None:
        # Those being deleted too: their keys are taken until their rows are gone.
        project_ids = list(Project.all_objects.filter(key__in=DEMO_PROJECT_KEYS).values_list("pk", flat=True))
        Project.all_objects.filter(pk__in=project_ids).delete()
        for project_id in project_ids:
            project_cache_invalidate(project_id=project_id)
        get_user_model().objects.filter(username__in=DEMO_USERNAMES).delete()
        self.stdout.write(f"Deleted {len(project_ids)} demo project(s) and the demo users.")

    def _ensure_users(self) -> dict[str, User]:
        user_model = get_user_model()
        users = {user.username: user for user in user_model.objects.filter(username__in=DEMO_USERNAMES)}
        for spec in DEMO_USERS:
            if spec.username not in users:
                # No password: demo people appear in the data; only the admin account logs in.
                users[spec.username] = user_model.objects.create_user(
                    username=spec.username,
                    email=spec.email,
                    first_name=spec.first_name,
                    last_name=spec.last_name,
                )
        return users

    def _summary(self) -> None:
        projects = list(
            Project.objects.filter(key__in=DEMO_PROJECT_KEYS)
            .annotate(
                task_count=Count("tasks", distinct=True), member_count=Count("memberships", distinct=True)
            )
            .order_by("key")
        )
        by_status = dict(
            Task.objects.filter(project__key__in=DEMO_PROJECT_KEYS)
            .order_by()
            .values("status")
            .annotate(count=Count("id"))
            .values_list("status", "count")
        )
        dependencies = TaskDependency.objects.filter(task__project__key__in=DEMO_PROJECT_KEYS).count()
        overdue = (
            Task.objects.filter(project__key__in=DEMO_PROJECT_KEYS, due_date__lt=timezone.localdate())
            .exclude(status__in=Task.CLOSED_STATUSES)
            .count()
        )
        users = get_user_model().objects.filter(username__in=DEMO_USERNAMES).count()
        self.stdout.write(self.style.MIGRATE_HEADING("Demo portfolio"))
        for project in projects:
            self.stdout.write(
                f"  {project.key:<7} {project.name:<28} {project.get_status_display():<10} "
                f"{project.task_count:>3} tasks  {project.member_count} members"
            )
        statuses = "  ".join(f"{label.lower()} {by_status.get(value, 0)}" for value, label in Status.choices)
        self.stdout.write(f"  Tasks by status: {statuses}")
        self.stdout.write(
            f"  {len(projects)} projects, {users} demo users, {sum(by_status.values())} tasks, "
            f"{dependencies} dependencies, {overdue} overdue"
        )
