from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ApmConfig(AppConfig):
    name = "apm"
    verbose_name = "APM core"

    def ready(self) -> None:
        # The schedule module reads django-celery-beat's models, which exist once the apps are loaded.
        # Registers APM's system checks, and a read scope per Celery task (apm.read_your_writes).
        from apm import checks, read_your_writes  # noqa: F401, PLC0415
        from apm.schedule import schedule_defaults_install  # noqa: PLC0415

        # After migrate (django-celery-beat's tables exist by then): add the default periodic tasks.
        post_migrate.connect(schedule_defaults_install, sender=self, dispatch_uid="apm_schedule_defaults")
