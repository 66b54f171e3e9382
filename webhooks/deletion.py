"""The webhooks' part of a project's deletion (projects.deletion): deliveries, then subscriptions.

Registered when the app is loaded (``WebhooksConfig.ready``).
"""

from __future__ import annotations

from projects.deletion import project_part_register, rows_part
from webhooks.models import WebhookDelivery, WebhookSubscription

project_part_register(
    rows_part(
        400,
        "webhook_deliveries",
        lambda project_id: WebhookDelivery.objects.filter(subscription__project_id=project_id),
    )
)
project_part_register(
    rows_part(
        410,
        "webhook_subscriptions",
        lambda project_id: WebhookSubscription.objects.filter(project_id=project_id),
    )
)
