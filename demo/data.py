"""The demo portfolio: its people, its projects and their task trees, and the odds the builder draws from.

Plain data, no database: ``demo.builder`` replays it through the services and ``seed_demo`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from projects.models import Membership, Project
from tasks.models import Task

Role = Membership.Role
Status = Task.Status
Priority = Task.Priority

ADMIN_USERNAME = "admin"
ADMIN_EMAIL = "admin@example.com"
# Where `make run` serves (its RUN_ADDRESS).
ADMIN_ADDRESS = "127.0.0.1:8000"
ADMIN_URL = f"http://{ADMIN_ADDRESS}/admin/"
DEFAULT_PASSWORD = "apm-demo"  # noqa: S105  (a documented demo password, printed while the account has it)
DEFAULT_SEED = 42
# A project still being planned has been filing its tasks for this long.
PLANNING_HISTORY_DAYS = 21
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
    # Days from today; negative is in the past. The project's history happens from its start to today
    # (to its target date once completed); one still being planned filed its tasks over the last weeks.
    start_offset: int
    target_offset: int
    # username -> role; exactly one owner, who creates the project.
    members: dict[str, str]
    # A title, or (epic title, subtask titles).
    tasks: list[str | tuple[str, list[str]]]


@dataclass
class Node:
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
        key="APM",
        name="AutoProjectManagement",
        description=(
            "APM itself: ingests git history, links commits to tasks and keeps progress, health and "
            "hotspots true. `make run` ingests this checkout's own history into this project."
        ),
        status=Project.Status.ACTIVE,
        start_offset=-84,
        target_offset=35,
        members={
            "maya.patel": Role.OWNER,
            "lucas.moreau": Role.MAINTAINER,
            "aisha.okafor": Role.MEMBER,
            "daniel.kim": Role.MEMBER,
            "emily.carter": Role.VIEWER,
        },
        tasks=[
            "Project skeleton: settings by environment, Celery and structured logging",
            "Data model for projects, tasks, dependencies and task history",
            (
                "Git ingestion",
                [
                    "Mirror every source with a commit-graph",
                    "Stream git log into commits and file changes in chunks",
                    "Incremental runs from the last ingested tip",
                    "Survive force pushes and interrupted runs",
                ],
            ),
            "Link commits to the tasks their messages name",
            (
                "REST API v1",
                [
                    "API tokens and permissions by project role",
                    "OpenAPI schema with Swagger UI and ReDoc",
                    "Cursor pagination for commit lists",
                ],
            ),
            "Push webhook queues an ingestion",
            "Outgoing webhooks with signed deliveries and retries",
            "Project health score with its reasons",
            "Burndown and burnup from task history",
            "Dashboard page for people",
            "Hotspots, change coupling and contributors",
            "Task exports as CSV and JSON",
            "Fix slow admin changelist on the commits table",
            "Load test: dashboard and project creation under 50 users",
            "Import layers checked by import-linter",
            "Kubernetes manifests and alert rules",
            "Demo data that tells a story on the first run",
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
        start_offset=-84,
        target_offset=49,
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
        start_offset=-86,
        target_offset=28,
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
