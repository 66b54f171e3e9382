from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_delete, post_save


class ProjectsConfig(AppConfig):
    name = "projects"
    verbose_name = "Projects"

    def ready(self) -> None:
        # A project deleted by any path (the ORM in a shell, a cascade, a batch script) leaves the cache:
        # its figures and its row in everyone's portfolio. Services invalidate their own writes; a delete
        # has no service every caller goes through, hence the signal.
        post_delete.connect(_project_deleted, sender="projects.Project", dispatch_uid="projects.cache")
        # Who may see which project (projects.selectors.project_id_visible) is remembered: any change to a
        # membership, a project (its key, its deletion) or a user (staff, active) forgets it all.
        for model in ("projects.Membership", "projects.Project"):
            post_save.connect(_access_forget, sender=model, dispatch_uid=f"projects.access.save.{model}")
            post_delete.connect(_access_forget, sender=model, dispatch_uid=f"projects.access.delete.{model}")
        post_save.connect(
            _access_forget, sender=settings.AUTH_USER_MODEL, dispatch_uid="projects.access.user"
        )
        post_delete.connect(
            _access_forget, sender=settings.AUTH_USER_MODEL, dispatch_uid="projects.access.user_delete"
        )


def _project_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    from projects.services import project_cache_invalidate  # noqa: PLC0415 (models are loaded by now)

    project_cache_invalidate(project_id=instance.pk)


def _access_forget(sender: Any, update_fields: frozenset[str] | None = None, **kwargs: Any) -> None:
    from apm.cache import generation_bump_on_commit  # noqa: PLC0415
    from apm.users import user_change_matters  # noqa: PLC0415
    from projects.selectors import PROJECT_ACCESS_NAMESPACE  # noqa: PLC0415

    if user_change_matters(update_fields):
        generation_bump_on_commit(PROJECT_ACCESS_NAMESPACE)
