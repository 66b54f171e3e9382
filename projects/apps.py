from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete


class ProjectsConfig(AppConfig):
    name = "projects"
    verbose_name = "Projects"

    def ready(self) -> None:
        # A project deleted by any path (the ORM in a shell, a cascade, a batch script) leaves the cache:
        # its figures and its row in everyone's portfolio. Services invalidate their own writes; a delete
        # has no service every caller goes through, hence the signal.
        post_delete.connect(_project_deleted, sender="projects.Project", dispatch_uid="projects.cache")


def _project_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    from projects.services import project_cache_invalidate  # noqa: PLC0415 (models are loaded by now)

    project_cache_invalidate(project_id=instance.pk)
