"""Webhook deliveries retried by a real ``celery -A config worker`` through a real Redis broker.

The eager tests run retries inline; this one checks what production relies on: a failed attempt is
scheduled again on the broker with its countdown, a worker picks it up, and the delivery row records
both attempts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid

import pytest

from tests.conftest import require_service
from tests.factories import ProjectFactory
from tests.isolation import celery_client, redis_broker
from tests.processes import celery_worker_start, celery_worker_stop, wait_for, worker_database_env
from tests.webhooks.receiver import Receiver
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_subscription_create

pytestmark = pytest.mark.django_db(transaction=True)

BROKER = redis_broker("APM_TEST_WEBHOOK_BROKER_URL")  # keyed under this test process's namespace


def test_a_failed_attempt_is_retried_by_a_worker_through_the_broker(settings, tmp_path):
    require_service(BROKER)
    settings.APM_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.APM_WEBHOOK_ALLOW_HTTP = True
    receiver = Receiver([503])  # the first attempt fails, the second succeeds
    project = ProjectFactory()
    subscription = webhook_subscription_create(project=project, url=receiver.url, events=["task.created"])
    # A queued delivery, as webhook_event_emit writes it (here without the eager send of this process).
    delivery = WebhookDelivery.objects.create(
        subscription=subscription,
        event="task.created",
        delivery_id=uuid.uuid4(),
        payload={"event": "task.created", "data": {"title": "Through the broker"}},
    )
    queue = f"apm-webhooks-{os.getpid()}"
    worker = celery_worker_start(
        queue=queue,
        env={
            **worker_database_env(home=str(tmp_path), broker=BROKER, queue=queue),
            "APM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "APM_WEBHOOK_ALLOW_HTTP": "true",
            "APM_WEBHOOK_BACKOFF": "1",  # seconds before the retry, counted down on the broker
        },
    )
    client = celery_client("apm-webhook-client", BROKER)
    try:
        client.send_task("projects.webhook_deliver", args=[str(delivery.delivery_id)], queue=queue)
        wait_for(
            lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == "succeeded",
            timeout=90,
            what="the worker to deliver after one retry",
        )
    finally:
        celery_worker_stop(worker)
        client.close()
        receiver.close()

    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (2, 200, "")
    assert [request["headers"]["X-APM-Delivery"] for request in receiver.requests] == [
        str(delivery.delivery_id)
    ] * 2
    for request in receiver.requests:  # each attempt is signed afresh with its own timestamp
        timestamp = request["headers"]["X-APM-Timestamp"]
        digest = hmac.new(
            subscription.secret.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256
        ).hexdigest()
        assert request["headers"]["X-APM-Signature-256"] == f"sha256={digest}"
    assert json.loads(receiver.requests[1]["body"])["data"]["title"] == "Through the broker"
