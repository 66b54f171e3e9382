"""``manage.py seed_demo``: a believable demo portfolio and an admin login, on the configured database.

Every project, membership, task, assignment, dependency and status change is made through the services,
so the demo data carries the same history (``TaskEvent`` rows with source ``batch``) as real work would.
"""

from __future__ import annotations

import datetime
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from projects.models import Membership, Project
from projects.services import membership_set, project_cache_invalidate, project_create
from tasks.models import Task, TaskDependency
from tasks.services import Source, task_assign, task_create, task_dependency_add, task_transition

Role = Membership.Role
Status = Task.Status
Priority = Task.Priority

ADMIN_USERNAME = "admin"
ADMIN_EMAIL = "admin@example.com"
ADMIN_URL = "http://127.0.0.1:8000/admin/"
DEFAULT_PASSWORD = "apm-demo"  # noqa: S105  (a documented demo password, printed on every run)
DEFAULT_SEED = 42
DEMO_EMAIL_DOMAIN = "northwind.example"


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    last_name: str

    @property
    def email(self) -> str:
        return f"{self.username}@{DEMO_EMAIL_DOMAIN}"


@dataclass(frozen=True)
class DemoProject:
    key: str
    name: str
    description: str
    status: str
    # Days from today; negative is in the past.
    start_offset: int
    target_offset: int
    # username -> role; exactly one owner, who creates the project.
    members: dict[str, str]
    # A title, or (epic title, subtask titles).
    tasks: list[str | tuple[str, list[str]]]


@dataclass
class _Node:
    """One task to create: its place in the project and the state it should end up in."""

    title: str
    parent: int | None = None
    children: list[int] = field(default_factory=list)
    status: str = Status.TODO
    depends_on: list[int] = field(default_factory=list)

    @property
    def is_epic(self) -> bool:
        return bool(self.children)


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("maya.patel", "Maya", "Patel"),
    DemoUser("lucas.moreau", "Lucas", "Moreau"),
    DemoUser("aisha.okafor", "Aisha", "Okafor"),
    DemoUser("daniel.kim", "Daniel", "Kim"),
    DemoUser("sofia.rossi", "Sofia", "Rossi"),
    DemoUser("jonas.berg", "Jonas", "Berg"),
    DemoUser("emily.carter", "Emily", "Carter"),
)
DEMO_USERNAMES: tuple[str, ...] = tuple(user.username for user in DEMO_USERS)

DEMO_PROJECTS: tuple[DemoProject, ...] = (
    DemoProject(
        key="PORTAL",
        name="Customer Portal",
        description=(
            "Self-service web portal where customers track orders, download invoices and talk to support. "
            "Replaces the phone and e-mail workflow for the top 500 accounts."
        ),
        status=Project.Status.ACTIVE,
        start_offset=-120,
        target_offset=60,
        members={
            "maya.patel": Role.OWNER,
            "lucas.moreau": Role.MAINTAINER,
            "aisha.okafor": Role.MEMBER,
            "daniel.kim": Role.MEMBER,
            "emily.carter": Role.VIEWER,
        },
        tasks=[
            "Set up CI pipeline with lint, type check and tests",
            "Add Sentry error reporting to the frontend",
            (
                "Order history page",
                [
                    "Paginated order list API endpoint",
                    "Order list table with filters",
                    "Order detail drawer",
                ],
            ),
            "Download invoices as PDF",
            "Password reset flow with expiring links",
            (
                "Support ticket inbox",
                [
                    "Ticket list with status badges",
                    "Reply to a ticket with attachments",
                    "E-mail notification on agent reply",
                ],
            ),
            "Fix session timeout logging users out during checkout",
            "Rate-limit login attempts per IP",
            "Improve Lighthouse performance score on the dashboard",
            "Accessibility audit: keyboard navigation and ARIA labels",
            "Localise date and currency formats",
            "Add end-to-end tests for checkout with Playwright",
            "Upgrade React to 18 and remove legacy lifecycle methods",
            "Migrate styles from Bootstrap 4 to Tailwind",
            "Cookie consent banner (GDPR)",
            "Dark mode toggle",
        ],
    ),
    DemoProject(
        key="FIELD",
        name="Field Service Mobile App",
        description=(
            "iOS and Android app for service technicians: today's jobs, offline work orders, photos and "
            "customer signatures, synced with the dispatch backend."
        ),
        status=Project.Status.ACTIVE,
        start_offset=-90,
        target_offset=75,
        members={
            "sofia.rossi": Role.OWNER,
            "jonas.berg": Role.MAINTAINER,
            "daniel.kim": Role.MEMBER,
            "lucas.moreau": Role.MEMBER,
            "maya.patel": Role.VIEWER,
            "emily.carter": Role.VIEWER,
        },
        tasks=[
            "Bootstrap React Native project with Expo",
            "Map view of today's jobs",
            (
                "Offline work orders",
                [
                    "Local SQLite cache for assigned jobs",
                    "Sync queue with conflict resolution",
                    "Offline banner with pending changes count",
                ],
            ),
            "Capture customer signature on job completion",
            "Photo upload with compression before sending",
            "Push notifications for new assignments",
            "Crash on Android 12 when opening the camera",
            "Barcode scanner for spare parts",
            "Time tracking per job",
            "Battery drain when GPS tracking runs in background",
            (
                "Release 1.0 to the app stores",
                [
                    "App Store screenshots and listing copy",
                    "Play Store internal testing track",
                    "Privacy policy page for store review",
                ],
            ),
            "Biometric login with Face ID and fingerprint",
            "Reduce app bundle size below 30 MB",
            "Instrument screens with analytics events",
            "Dark mode support",
        ],
    ),
    DemoProject(
        key="DATA",
        name="Analytics Data Platform",
        description=(
            "Central warehouse with dbt models and Airflow pipelines feeding finance, sales and product "
            "dashboards; retires the nightly CSV exports."
        ),
        status=Project.Status.ACTIVE,
        start_offset=-150,
        target_offset=45,
        members={
            "aisha.okafor": Role.OWNER,
            "maya.patel": Role.MAINTAINER,
            "jonas.berg": Role.MEMBER,
            "sofia.rossi": Role.MEMBER,
            "daniel.kim": Role.VIEWER,
        },
        tasks=[
            "Provision warehouse schemas for staging and marts",
            "Ingest orders from the ERP nightly",
            "dbt tests for primary keys and not-null columns",
            (
                "Customer 360 model",
                [
                    "Deduplicate customers across CRM and shop",
                    "Lifetime value calculation",
                    "Churn risk score feature table",
                ],
            ),
            "Airflow DAG failure alerts to Slack",
            "Pipeline fails when the source CSV has a BOM",
            "Backfill two years of web analytics events",
            "Partition the events table by day",
            "Revenue dashboard for finance",
            (
                "Self-service BI rollout",
                [
                    "Metabase install behind SSO",
                    "Curated datasets for sales",
                    "Training session for analysts",
                ],
            ),
            "Row-level security for regional managers",
            "Document data lineage for GDPR requests",
            "Cost monitoring for warehouse queries",
            "Data quality scorecard",
            "Retire the legacy cron exports",
        ],
    ),
    DemoProject(
        key="SSO",
        name="Single Sign-On Rollout",
        description=(
            "One login for the portal, the intranet and internal tools, with MFA for administrators and "
            "automatic provisioning from HR."
        ),
        status=Project.Status.PLANNING,
        start_offset=14,
        target_offset=140,
        members={
            "lucas.moreau": Role.OWNER,
            "maya.patel": Role.MAINTAINER,
            "jonas.berg": Role.MEMBER,
            "emily.carter": Role.MEMBER,
            "aisha.okafor": Role.VIEWER,
        },
        tasks=[
            "Choose identity provider (Keycloak vs. Auth0)",
            "Inventory applications that need SSO",
            "Spike: SAML vs. OIDC for the legacy intranet",
            (
                "OIDC integration for the customer portal",
                [
                    "Register client and redirect URIs",
                    "Map IdP groups to portal roles",
                    "Single logout across applications",
                ],
            ),
            "Enforce MFA for administrators",
            "SCIM user provisioning from HR",
            "Migration plan for existing local passwords",
            "Session lifetime and refresh token policy",
            "Security review with the ISO 27001 auditor",
            "Runbook for an identity provider outage",
            "Branded login page",
            "Pilot with the support team",
            "Announce the rollout to staff",
        ],
    ),
    DemoProject(
        key="BILL",
        name="Billing Engine Migration",
        description=(
            "Moved subscription billing from the in-house engine to the new invoicing service, with a "
            "one-cycle dual run and finance sign-off before the switch."
        ),
        status=Project.Status.COMPLETED,
        start_offset=-300,
        target_offset=-45,
        members={
            "jonas.berg": Role.OWNER,
            "sofia.rossi": Role.MAINTAINER,
            "aisha.okafor": Role.MEMBER,
            "lucas.moreau": Role.MEMBER,
            "emily.carter": Role.VIEWER,
        },
        tasks=[
            "Freeze the legacy billing schema",
            (
                "Port invoice generation to the new engine",
                [
                    "Tax rules per country",
                    "Proration for mid-cycle plan changes",
                    "Credit notes",
                ],
            ),
            "Idempotency keys on payment webhooks",
            "Handle currency rounding per ISO 4217",
            "Dual-run old and new engine for one billing cycle",
            "Reconcile dual-run differences",
            "Load test the month-end invoice run",
            "Migrate 18,000 active subscriptions",
            "Dunning e-mails for failed payments",
            "Switch payment provider webhooks to the new endpoint",
            "Export to accounting (DATEV)",
            "Finance sign-off on migrated balances",
            "Support macros for billing questions",
            "Decommission the legacy billing server",
        ],
    ),
)
DEMO_PROJECT_KEYS: tuple[str, ...] = tuple(project.key for project in DEMO_PROJECTS)

# Share of a project's tasks in each status, by project status. Listed from most to least advanced:
# earlier tasks of a project are further along, the way real backlogs age.
STATUS_PROFILES: dict[str, dict[str, float]] = {
    Project.Status.ACTIVE: {
        Status.DONE: 0.38,
        Status.IN_REVIEW: 0.10,
        Status.IN_PROGRESS: 0.14,
        Status.TODO: 0.18,
        Status.BACKLOG: 0.14,
        Status.CANCELLED: 0.06,
    },
    Project.Status.PLANNING: {
        Status.DONE: 0.06,
        Status.IN_PROGRESS: 0.06,
        Status.TODO: 0.30,
        Status.BACKLOG: 0.58,
    },
    Project.Status.COMPLETED: {Status.DONE: 0.9, Status.CANCELLED: 0.1},
}
# The status changes that bring a freshly created task to its final status.
TRANSITION_PATHS: dict[str, list[str]] = {
    Status.BACKLOG: [],
    Status.TODO: [],
    Status.IN_PROGRESS: [Status.IN_PROGRESS],
    Status.IN_REVIEW: [Status.IN_PROGRESS, Status.IN_REVIEW],
    Status.DONE: [Status.IN_PROGRESS, Status.IN_REVIEW, Status.DONE],
    Status.CANCELLED: [Status.CANCELLED],
}
ESTIMATES_HOURS = (1, 2, 3, 4, 6, 8, 12, 16, 24)
URGENT_WORDS = ("crash", "fix", "fails", "drain", "security", "mfa")


class Command(BaseCommand):
    """Seed the demo portfolio (skipped when present) and ensure the demo admin account."""

    help = (
        "Create a demo portfolio (projects, users, tasks with history) and an admin account. "
        "Running it again changes nothing but the admin password; --reset rebuilds the demo data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Random seed (default 42).")
        parser.add_argument(
            "--password",
            default=DEFAULT_PASSWORD,
            help=f"Password of the '{ADMIN_USERNAME}' account (default {DEFAULT_PASSWORD}).",
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
        password: str = options["password"]
        if not password:
            raise CommandError("--password cannot be empty.")
        started = time.monotonic()
        with transaction.atomic():
            if options["reset"]:
                self._reset()
            existing = set(Project.objects.filter(key__in=DEMO_PROJECT_KEYS).values_list("key", flat=True))
            missing = [spec for spec in DEMO_PROJECTS if spec.key not in existing]
            if missing:
                users = self._ensure_users()
                for spec in missing:
                    # One generator per project: a project's content does not depend on which others
                    # had to be built in this run. (Not for security, hence S311.)
                    rng = random.Random(f"{options['seed']}:{spec.key}")  # noqa: S311
                    _ProjectBuilder(spec=spec, users=users, rng=rng).build()
            self._ensure_admin(password=password)
        elapsed = time.monotonic() - started
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
        self._summary()
        self.stdout.write(self.style.MIGRATE_HEADING("Admin login"))
        self.stdout.write(f"  URL:      {ADMIN_URL}")
        self.stdout.write(f"  Username: {ADMIN_USERNAME}")
        self.stdout.write(f"  Password: {password}")
        if not settings.DEBUG:
            self.stdout.write(
                self.style.WARNING(
                    f"DEBUG is off: change the '{ADMIN_USERNAME}' password if others can reach this site."
                )
            )

    def _reset(self) -> None:
        project_ids = list(Project.objects.filter(key__in=DEMO_PROJECT_KEYS).values_list("pk", flat=True))
        Project.objects.filter(pk__in=project_ids).delete()
        for project_id in project_ids:
            project_cache_invalidate(project_id=project_id)
        get_user_model().objects.filter(username__in=DEMO_USERNAMES).delete()
        self.stdout.write(f"Deleted {len(project_ids)} demo project(s) and the demo users.")

    def _ensure_users(self) -> dict[str, AbstractBaseUser]:
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

    def _ensure_admin(self, *, password: str) -> None:
        user_model = get_user_model()
        admin = user_model.objects.filter(username=ADMIN_USERNAME).first()
        if admin is None:
            admin = user_model(username=ADMIN_USERNAME, email=ADMIN_EMAIL)
        admin.is_active = True
        admin.is_staff = True
        admin.is_superuser = True
        admin.set_password(password)
        admin.save()

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


class _ProjectBuilder:
    """One demo project: its tasks' final states are planned first, then replayed through the services."""

    def __init__(self, *, spec: DemoProject, users: dict[str, AbstractBaseUser], rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.today = timezone.localdate()
        self.start = self.today + datetime.timedelta(days=spec.start_offset)
        self.target = self.today + datetime.timedelta(days=spec.target_offset)
        owner = next(username for username, role in spec.members.items() if role == Role.OWNER)
        self.owner = users[owner]
        self.leads = [users[name] for name, role in spec.members.items() if role in Membership.ADMIN_ROLES]
        self.writers = [users[name] for name, role in spec.members.items() if role in Membership.WRITE_ROLES]
        self.users = users
        self.nodes = self._plan()

    def build(self) -> Project:
        """Create the project, its members and its tasks; return the project."""
        spec = self.spec
        project = project_create(
            name=spec.name,
            key=spec.key,
            owner=self.owner,
            description=spec.description,
            status=spec.status,
            start_date=self.start,
            target_date=self.target,
        )
        for username, role in spec.members.items():
            if self.users[username] != self.owner:
                membership_set(project=project, user=self.users[username], role=role)
        self._build_tasks(project)
        return project

    # --- Planning: decide every task's final state before touching the database ----------------------

    def _plan(self) -> list[_Node]:
        nodes: list[_Node] = []
        for entry in self.spec.tasks:
            if isinstance(entry, str):
                nodes.append(_Node(title=entry))
                continue
            title, subtasks = entry
            epic = len(nodes)
            nodes.append(_Node(title=title))
            for subtask in subtasks:
                nodes[epic].children.append(len(nodes))
                nodes.append(_Node(title=subtask, parent=epic))
        leaves = [index for index, node in enumerate(nodes) if not node.is_epic]
        for index, status in zip(leaves, self._status_plan(len(leaves)), strict=True):
            nodes[index].status = status
        for node in nodes:
            if node.is_epic:
                node.status = _epic_status([nodes[child].status for child in node.children])
        self._plan_dependencies(nodes, leaves)
        return nodes

    def _status_plan(self, count: int) -> list[str]:
        weights = STATUS_PROFILES[self.spec.status]
        # At least one task per status of the profile, so every status shows up in the portfolio.
        counts = {status: max(1, int(share * count)) for status, share in weights.items()}
        dominant = max(weights, key=weights.__getitem__)
        counts[dominant] += count - sum(counts.values())
        plan = [status for status in weights if status != Status.CANCELLED for _ in range(counts[status])]
        # A little disorder: neighbours in the backlog do not finish in exactly the order they were filed.
        for _ in range(count // 4):
            position = self.rng.randrange(len(plan) - 1)
            plan[position], plan[position + 1] = plan[position + 1], plan[position]
        for _ in range(counts.get(Status.CANCELLED, 0)):
            plan.insert(self.rng.randrange(len(plan) + 1), Status.CANCELLED)
        return plan

    def _plan_dependencies(self, nodes: list[_Node], leaves: list[int]) -> None:
        # A task only ever waits on an earlier one, so the graph cannot have a cycle; and a done task only
        # on closed ones, so it can be closed after them.
        for position, index in enumerate(leaves[1:], start=1):
            if self.rng.random() >= 0.35:
                continue
            node = nodes[index]
            candidates = [
                earlier
                for earlier in leaves[max(0, position - 6) : position]
                if node.status != Status.DONE or nodes[earlier].status in Task.CLOSED_STATUSES
            ]
            wanted = 2 if self.rng.random() < 0.3 else 1
            node.depends_on = sorted(self.rng.sample(candidates, min(wanted, len(candidates))))

    # --- Building: replay the plan through the services ----------------------------------------------

    def _build_tasks(self, project: Project) -> None:
        tasks: list[Task] = []
        for index, node in enumerate(self.nodes):
            tasks.append(self._create(project, index, node, tasks))
        for node, task in zip(self.nodes, tasks, strict=True):
            for dependency in node.depends_on:
                task_dependency_add(
                    task=task, depends_on=tasks[dependency], source=Source.BATCH, actor=task.reporter
                )
        # Creation order is also dependency order (a task waits only on earlier ones), so each task's
        # dependencies are closed before it is.
        for node, task in zip(self.nodes, tasks, strict=True):
            path = TRANSITION_PATHS[node.status]
            if node.is_epic and node.status == Status.DONE:
                path = [Status.IN_PROGRESS, Status.DONE]  # epics are not reviewed, their subtasks are
            elif node.status == Status.DONE and self.rng.random() < 0.2:
                path = [Status.IN_PROGRESS, Status.DONE]  # small fixes merged without a formal review
            actor = task.assignee or task.reporter
            for status in path:
                task_transition(task=task, status=status, source=Source.BATCH, actor=actor)

    def _create(self, project: Project, index: int, node: _Node, tasks: list[Task]) -> Task:
        reporter = self.rng.choice(self.leads)
        task = task_create(
            project=project,
            title=node.title,
            source=Source.BATCH,
            actor=reporter,
            status=Status.BACKLOG if node.status == Status.BACKLOG else Status.TODO,
            priority=self._priority(node),
            due_date=self._due_date(index, node),
            estimate_hours=self._estimate(node),
            parent=tasks[node.parent] if node.parent is not None else None,
        )
        assignee = self._assignee(node)
        if assignee is not None:
            task_assign(task=task, assignee=assignee, source=Source.BATCH, actor=reporter)
        return task

    def _priority(self, node: _Node) -> int:
        if any(word in node.title.lower() for word in URGENT_WORDS):
            return self.rng.choice([Priority.HIGH, Priority.CRITICAL])
        return self.rng.choices(
            [Priority.LOW, Priority.MEDIUM, Priority.HIGH, Priority.CRITICAL], weights=[25, 45, 22, 8]
        )[0]

    def _due_date(self, index: int, node: _Node) -> datetime.date | None:
        if node.status == Status.BACKLOG and self.rng.random() < 0.6:
            return None
        # Due dates follow the plan: earlier tasks fall due earlier in the project's span, so the tasks
        # active today are due around today and some open ones are already overdue.
        nominal = self.start + (self.target - self.start) * (index / len(self.nodes))
        due = nominal + datetime.timedelta(days=self.rng.randint(-7, 10))
        return min(max(due, self.start), self.target)

    def _estimate(self, node: _Node) -> Decimal | None:
        if node.is_epic or (node.status == Status.BACKLOG and self.rng.random() < 0.5):
            return None
        return Decimal(self.rng.choice(ESTIMATES_HOURS))

    def _assignee(self, node: _Node) -> AbstractBaseUser | None:
        if node.is_epic:
            return self.rng.choice(self.leads)
        chance = {Status.BACKLOG: 0.15, Status.TODO: 0.7, Status.CANCELLED: 0.3}.get(node.status, 1.0)
        return self.rng.choice(self.writers) if self.rng.random() < chance else None


def _epic_status(children: list[str]) -> str:
    """An epic's status, read from its subtasks' statuses."""
    open_children = [status for status in children if status not in Task.CLOSED_STATUSES]
    if not open_children:
        return Status.CANCELLED if all(status == Status.CANCELLED for status in children) else Status.DONE
    if len(open_children) < len(children) or any(
        status in (Status.IN_PROGRESS, Status.IN_REVIEW) for status in open_children
    ):
        return Status.IN_PROGRESS
    return Status.TODO if Status.TODO in open_children else Status.BACKLOG
