from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_delete, post_migrate, post_save


class ApmConfig(AppConfig):
    name = "apm"
    verbose_name = "APM core"

    def ready(self) -> None:
        # The schedule module reads django-celery-beat's models, which exist once the apps are loaded.
        # Registers APM's system checks, and a read scope per Celery task (apm.read_your_writes).
        from apm import checks, read_your_writes  # noqa: F401, PLC0415
        from apm.schedule import schedule_defaults_install  # noqa: PLC0415
        from apm.services import api_tokens_forget, api_tokens_forget_on_user_save  # noqa: PLC0415

        # Tokens remembered by api_token_authenticate are dropped by any change to a token or a user.
        post_save.connect(api_tokens_forget, sender="apm.ApiToken", dispatch_uid="apm_tokens_forget_save")
        post_delete.connect(api_tokens_forget, sender="apm.ApiToken", dispatch_uid="apm_tokens_forget_delete")
        post_save.connect(
            api_tokens_forget_on_user_save,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="apm_tokens_forget_user",
        )
        post_delete.connect(
            api_tokens_forget, sender=settings.AUTH_USER_MODEL, dispatch_uid="apm_tokens_forget_user_delete"
        )

        # After migrate (django-celery-beat's tables exist by then): add the default periodic tasks.
        post_migrate.connect(schedule_defaults_install, sender=self, dispatch_uid="apm_schedule_defaults")
