"""Writes of the demo: its admin account, and the health of its projects."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from demo.data import ADMIN_EMAIL, ADMIN_USERNAME, DEFAULT_PASSWORD, DEMO_PROJECT_KEYS
from insights.services import project_health_record
from projects.models import Project


@transaction.atomic
def demo_admin_ensure(*, password: str | None = None, reset_password: bool = False) -> str | None:
    """Create the demo admin account when it is missing; return the password written, or None.

    An existing account is left alone: its password may be the one its owner chose, and writing a new
    hash would also log every browser out (the session hash changes). ``reset_password`` sets the
    password again (``password``, or the demo one) and makes the account a working superuser again.
    """
    user_model = get_user_model()
    admin = user_model.objects.select_for_update().filter(username=ADMIN_USERNAME).first()
    if admin is not None and not reset_password:
        return None
    if admin is None:
        admin = user_model(username=ADMIN_USERNAME, email=ADMIN_EMAIL)
    chosen = password or DEFAULT_PASSWORD
    admin.is_active = True
    admin.is_staff = True
    admin.is_superuser = True
    admin.set_password(chosen)
    admin.save()
    return chosen


def demo_health_record() -> list[str]:
    """Record the health of every demo project never assessed yet; return their keys.

    A freshly built project would otherwise show no level until the hourly schedule runs. Projects
    already assessed are the schedule's (and each ingestion's) to update.
    """
    projects = list(
        Project.objects.filter(key__in=DEMO_PROJECT_KEYS, health_checked_at__isnull=True).order_by("key")
    )
    for project in projects:
        project_health_record(project=project)
    return [project.key for project in projects]
