"""Celery tasks of outgoing webhooks: thin, take ids, call one service each.

The task names keep the ``projects.`` prefix they had before webhooks had an app of their own: queued
messages and the beat schedule's rows carry them.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from webhooks.services import DELIVER_TASK, webhook_deliver, webhook_deliveries_resume


@shared_task(name=DELIVER_TASK, bind=True, max_retries=None, ignore_result=True)
def webhook_deliver_task(self: Any, delivery_id: str) -> Any:
    """Make one attempt at delivery ``delivery_id``; schedule the next one when the service asks for it.

    The delivery row counts the attempts and stops them at APM_WEBHOOK_MAX_ATTEMPTS, so Celery's own
    retry limit is off. Our retry count tells the service how many attempts this message comes after,
    so a duplicate message (a redelivery) does not send again.
    """
    outcome = webhook_deliver(delivery_id=delivery_id, attempt=self.request.retries)
    if outcome.retry_in is None:
        return outcome.status
    # On a worker the retry is scheduled on the broker and raised. Eager Celery (the embedded default,
    # the tests) would propagate a raised Retry as an error; returned, it runs the next attempt at once.
    return self.retry(countdown=outcome.retry_in, throw=not self.request.is_eager)


@shared_task(name="projects.webhook_deliveries_resume")
def webhook_deliveries_resume_task() -> int:
    """Enqueue pending webhook deliveries that were never enqueued or whose attempt died."""
    return webhook_deliveries_resume()
