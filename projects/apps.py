from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ProjectsConfig(AppConfig):
    name = "projects"
    verbose_name = "Projects"

    def ready(self) -> None:
        from projects.schedule import schedule_defaults_install

        # After migrate (django-celery-beat's tables exist by then): add the default periodic tasks.
        post_migrate.connect(schedule_defaults_install, sender=self, dispatch_uid="apm_schedule_defaults")
