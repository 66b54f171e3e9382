"""Data migrations of the projects app, run on rows as they were before."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.urls import reverse

from projects.models import Membership, Project
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def admin_save(client, project: Project, **changes: str) -> None:
    """Save ``project``'s change page in the admin as an operator would, with ``changes``."""
    page = reverse("admin:projects_project_change", args=[project.pk])
    response = client.get(page)
    data = {
        name: value
        for name, value in response.context["adminform"].form.initial.items()
        if value not in (None, False)
    }
    data["commit_status_tags"] = "{}"
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
        for form in inline.formset.initial_forms:
            data.update(
                {form.add_prefix(name): value for name, value in form.initial.items() if value is not None}
            )
            data[form.add_prefix("id")] = form.instance.pk
    data.update(changes)
    response = client.post(page, data)
    assert response.status_code == 302, response.context["errors"]


def test_short_references_are_turned_off_unless_someone_chose_them(admin_client, admin_user):
    migration = importlib.import_module("projects.migrations.0005_commit_short_references_opt_in")
    ProjectFactory(key="OLD", commit_short_references=True)  # the old default, never touched
    ProjectFactory(key="OFF", commit_short_references=False)
    chosen = ProjectFactory(key="KEPT")
    MembershipFactory(project=chosen, user=admin_user, role=Membership.Role.OWNER)
    admin_save(admin_client, chosen, commit_short_references="on")  # an operator turned them on
    assert Project.objects.get(key="KEPT").commit_short_references is True

    migration.short_references_off_unless_chosen(apps, None)

    states = dict(Project.objects.values_list("key", "commit_short_references"))
    assert (states["OLD"], states["OFF"], states["KEPT"]) == (False, False, True)


def test_new_projects_do_not_read_short_references():
    assert ProjectFactory().commit_short_references is False
