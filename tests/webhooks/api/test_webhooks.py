"""``/api/v1/projects/{key}/webhooks/``: managing outgoing webhooks and reading their delivery log.

Who may call which route is in test_permissions.py, and query counts in test_query_counts.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.services import task_create
from tests.webhooks.receiver import Receiver
from webhooks.models import WebhookDelivery, WebhookSubscription
from webhooks.services import webhook_subscription_create

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://93.184.215.14/hooks/apm"  # a public address literal: valid without DNS
BASE = "/api/v1/projects/ALPHA/webhooks/"


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.APM_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.APM_WEBHOOK_ALLOW_HTTP = True
    settings.APM_WEBHOOK_BACKOFF = 0
    server = Receiver([])
    yield server
    server.close()


def test_create_shows_the_secret_once(world):
    owner = world.client("owner")

    created = owner.post(
        BASE,
        {"url": PUBLIC_URL, "events": ["task.created", "ingestion.failed"], "description": "CI"},
        format="json",
    )
    listed = owner.get(BASE)
    detail = owner.get(f"{BASE}{created.json()['id']}/")

    assert created.status_code == 201, created.content
    body = created.json()
    subscription = WebhookSubscription.objects.get()
    assert body["secret"] == subscription.secret
    assert (body["url"], body["events"], body["is_active"], body["created_by"]) == (
        PUBLIC_URL,
        ["task.created", "ingestion.failed"],
        True,
        "owner",
    )
    assert [row["id"] for row in listed.json()] == [subscription.pk]
    assert "secret" not in listed.json()[0]
    assert "secret" not in detail.json()
    assert subscription.project == world.project


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"url": "https://169.254.169.254/latest/", "events": ["task.created"]}, "url", "link-local"),
        ({"url": "https://10.0.0.1/", "events": ["task.created"]}, "url", "a private address"),
        ({"url": "http://93.184.215.14/", "events": ["task.created"]}, "url", "Only https://"),
        ({"url": "https://u:p@93.184.215.14/", "events": ["task.created"]}, "url", "user name or password"),
        ({"url": "not a url", "events": ["task.created"]}, "url", "valid URL"),
        ({"url": PUBLIC_URL, "events": ["task.deleted"]}, "events", "not a valid choice"),
        ({"url": PUBLIC_URL, "events": []}, "events", "may not be empty"),
        ({"url": PUBLIC_URL, "events": "task.created"}, "events", "list"),
        ({"url": PUBLIC_URL, "events": ["task.created"], "secret": "mine"}, "secret", "rotate-secret"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(world, body, field, message):
    response = world.client("maintainer").post(BASE, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["detail"] == "Invalid input."
    assert message in json.dumps(response.json()["errors"][field])
    assert not WebhookSubscription.objects.exists()


def test_a_refused_name_is_a_400_that_does_not_say_what_it_resolves_to(world, monkeypatch):
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        internal = {"wiki.corp.example.test": "10.9.8.7", "db.corp.example.test": "fd00::5"}
        return real_getaddrinfo(internal.get(host, host), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    owner = world.client("owner")

    wiki = owner.post(
        BASE, {"url": "https://wiki.corp.example.test/", "events": ["task.created"]}, format="json"
    )
    db = owner.post(BASE, {"url": "https://db.corp.example.test/", "events": ["task.created"]}, format="json")

    assert (wiki.status_code, db.status_code) == (400, 400)
    assert wiki.json()["errors"]["url"][0].startswith("The host wiki.corp.example.test resolves to a private")
    assert db.json()["errors"]["url"][0].startswith("The host db.corp.example.test resolves to a private")
    assert "10.9.8.7" not in wiki.content.decode()
    assert "fd00" not in db.content.decode()
    assert not WebhookSubscription.objects.exists()


def test_update_rotate_and_delete(world):
    subscription = webhook_subscription_create(project=world.project, url=PUBLIC_URL, events=["task.created"])
    old_secret = subscription.secret
    owner = world.client("owner")
    url = f"{BASE}{subscription.pk}/"

    patched = owner.patch(url, {"events": ["task.status_changed"], "is_active": False}, format="json")
    refused = owner.patch(url, {"url": "https://127.0.0.1/"}, format="json")
    rotated = owner.post(f"{url}rotate-secret/")
    subscription.refresh_from_db()

    assert patched.status_code == 200
    assert (patched.json()["events"], patched.json()["is_active"]) == (["task.status_changed"], False)
    assert refused.status_code == 400
    assert "loopback" in refused.json()["errors"]["url"][0]
    assert subscription.url == PUBLIC_URL
    assert rotated.status_code == 200
    assert rotated.json() == {"secret": subscription.secret}
    assert subscription.secret != old_secret

    deleted = owner.delete(url)

    assert deleted.status_code == 204
    assert not WebhookSubscription.objects.exists()


def test_another_projects_webhook_is_not_found_under_this_project(world):
    theirs = webhook_subscription_create(project=world.other, url=PUBLIC_URL, events=["task.created"])

    for method in ("get", "patch", "delete"):
        response = getattr(world.client("owner"), method)(f"{BASE}{theirs.pk}/", {}, format="json")
        assert response.status_code == 404
    # Staff see every project, but still only under the project the webhook belongs to.
    assert world.client("staff").get(f"{BASE}{theirs.pk}/").status_code == 404
    assert world.client("staff").get(f"/api/v1/projects/BETA/webhooks/{theirs.pk}/").status_code == 200


def test_ping_sends_now_and_the_delivery_log_shows_it(world, receiver, django_capture_on_commit_callbacks):
    owner = world.client("owner")
    created = owner.post(BASE, {"url": receiver.url, "events": ["task.created"]}, format="json").json()
    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=world.project, title="Announced", source="api")

    ping = owner.post(f"{BASE}{created['id']}/ping/")
    log = owner.get(f"{BASE}{created['id']}/deliveries/")

    assert ping.status_code == 200, ping.content
    assert (ping.json()["event"], ping.json()["status"], ping.json()["last_status_code"]) == (
        "ping",
        "succeeded",
        200,
    )
    assert [json.loads(r["body"])["event"] for r in receiver.requests] == ["task.created", "ping"]
    rows = log.json()["results"]
    assert [(row["event"], row["status"], row["attempts"]) for row in rows] == [
        ("ping", "succeeded", 1),
        ("task.created", "succeeded", 1),
    ]
    assert rows[0]["delivery_id"] == receiver.requests[1]["headers"]["X-APM-Delivery"]


def test_ping_to_a_target_refused_at_send_time_reports_why(world):
    # Stored directly: a URL accepted under other settings (or before its DNS changed).
    subscription = WebhookSubscription.objects.create(
        project=world.project, url="https://127.0.0.1:9/", events=["task.created"], secret="s"
    )

    ping = world.client("maintainer").post(f"{BASE}{subscription.pk}/ping/")

    assert ping.status_code == 200
    assert (ping.json()["status"], ping.json()["last_status_code"]) == ("failed", None)
    assert "loopback" in ping.json()["last_error"]


def test_the_delivery_log_pages_with_a_cursor(world):
    subscription = webhook_subscription_create(project=world.project, url=PUBLIC_URL, events=["task.created"])
    for n in range(5):
        WebhookDelivery.objects.create(
            subscription=subscription,
            event="task.created",
            delivery_id=f"00000000-0000-0000-0000-00000000000{n}",
            payload={},
        )
    owner = world.client("owner")

    first = owner.get(f"{BASE}{subscription.pk}/deliveries/?page_size=3").json()
    second = owner.get(first["next"]).json()

    seen = [row["delivery_id"] for row in first["results"] + second["results"]]
    expected = [
        str(d)
        for d in WebhookDelivery.objects.order_by("-created_at", "-id").values_list("delivery_id", flat=True)
    ]
    assert seen == expected
    assert second["next"] is None
