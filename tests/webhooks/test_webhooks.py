"""Outgoing webhooks end to end: events become signed POSTs to a real HTTP server on 127.0.0.1.

The receiver runs in a thread of the test process; Celery is eager, so deliveries (and their retries,
with the backoff set to 0) run when the test's on-commit callbacks do.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from repos.models import IngestionRun
from repos.services import ingestion_request, repository_register
from tasks.models import TaskEvent
from tasks.services import task_create, task_transition
from tests.admin_helpers import assert_changelist_queries_fixed
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.repos.gitrepo import GitRepo
from tests.webhooks.receiver import Receiver
from webhooks.models import WebhookDelivery, WebhookSubscription
from webhooks.services import (
    webhook_deliver,
    webhook_delivery_redeliver,
    webhook_event_emit,
    webhook_ping,
    webhook_subscription_create,
    webhook_subscription_secret_rotate,
    webhook_subscription_update,
    webhook_url_validate,
)
from webhooks.tasks import webhook_deliveries_resume_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver() -> Iterator[Any]:
    started: list[Receiver] = []

    def start(*statuses: int, body: bytes | None = None) -> Receiver:
        started.append(Receiver(list(statuses), body=body))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def local_targets(settings: Any) -> Any:
    """Let webhooks reach the receiver on 127.0.0.1 over plain http, and retry without waiting."""
    settings.APM_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.APM_WEBHOOK_ALLOW_HTTP = True
    settings.APM_WEBHOOK_BACKOFF = 0
    return settings


def subscribe(project: Any, url: str, events: list[str] | None = None, **options: Any) -> WebhookSubscription:
    return webhook_subscription_create(project=project, url=url, events=events or ["task.created"], **options)


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """What a receiver does (docs/webhooks.md): recompute the HMAC, compare in constant time."""
    timestamp = headers["X-APM-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", headers["X-APM-Signature-256"])


def test_a_created_task_arrives_signed(local_targets, receiver, django_capture_on_commit_callbacks):
    server = receiver()
    project = ProjectFactory(key="HOOK")
    subscription = subscribe(project, server.url)
    assignee = UserFactory(username="ada")
    MembershipFactory(project=project, user=assignee)

    with django_capture_on_commit_callbacks(execute=True):
        task = task_create(project=project, title="Ship it", source=TaskEvent.Source.API, assignee=assignee)

    [request] = server.requests
    headers, body = request["headers"], request["body"]
    delivery = WebhookDelivery.objects.get()
    assert request["path"] == "/hook?team=a"
    assert verify(subscription.secret, headers, body)
    assert not verify("another secret", headers, body)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "APM-Webhooks/1"
    assert headers["X-APM-Event"] == "task.created"
    assert headers["X-APM-Delivery"] == str(delivery.delivery_id)
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    payload = json.loads(body)
    assert payload["id"] == str(delivery.delivery_id)
    assert (payload["event"], payload["project"]) == ("task.created", {"id": project.pk, "key": "HOOK"})
    assert payload["data"] == {
        "key": task.key,
        "title": "Ship it",
        "status": "todo",
        "priority": task.priority,
        "assignee": "ada",
        "source": "api",
    }
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    assert delivery.delivered_at is not None
    assert delivery.next_attempt_at is None
    # The stored excerpt is capped, whatever the receiver sends.
    assert delivery.response_excerpt.startswith("answer 200")
    assert len(delivery.response_excerpt) == 1024


def test_a_status_change_is_sent_once_and_only_when_the_status_changes(
    local_targets, receiver, django_capture_on_commit_callbacks
):
    server = receiver()
    project = ProjectFactory()
    task = task_create(project=project, title="Move me", source="system")
    subscribe(project, server.url, ["task.status_changed"])
    actor = UserFactory(username="grace")

    with django_capture_on_commit_callbacks(execute=True):
        task_transition(task=task, status="in_progress", source="commit", actor=actor, commit_sha="a" * 40)
        task_transition(task=task, status="in_progress", source="api")  # no change: no event

    [request] = server.requests
    assert json.loads(request["body"])["data"] == {
        "key": task.key,
        "from": "todo",
        "to": "in_progress",
        "source": "commit",
        "commit_sha": "a" * 40,
        "actor": "grace",
    }


@pytest.mark.parametrize(
    ("answers", "status", "attempts", "error"),
    [
        ([500, 200], "succeeded", 2, ""),
        ([429, 200], "succeeded", 2, ""),
        ([410], "failed", 1, "HTTP 410"),
        ([302], "failed", 1, "HTTP 302 (redirects are not followed)"),
        ([503, 503, 503, 503], "failed", 3, "HTTP 503"),
    ],
)
def test_server_errors_are_retried_and_client_errors_are_not(  # noqa: PLR0917
    local_targets, receiver, django_capture_on_commit_callbacks, answers, status, attempts, error
):
    local_targets.APM_WEBHOOK_MAX_ATTEMPTS = 3
    server = receiver(*answers)
    project = ProjectFactory()
    subscribe(project, server.url)

    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=project, title="Retry me", source="system")

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (status, attempts, error)
    assert len(server.requests) == attempts
    # Every attempt is the same delivery (receivers deduplicate on it), signed afresh.
    assert {r["headers"]["X-APM-Delivery"] for r in server.requests} == {str(delivery.delivery_id)}
    assert delivery.last_status_code == answers[attempts - 1]
    assert delivery.duration_ms is not None


def test_network_errors_are_retried_until_the_attempts_run_out(
    local_targets, django_capture_on_commit_callbacks
):
    local_targets.APM_WEBHOOK_MAX_ATTEMPTS = 2
    with socket.socket() as closed:  # a port nobody listens on once this socket is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    project = ProjectFactory()
    subscribe(project, f"http://127.0.0.1:{port}/")

    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=project, title="Nobody listens", source="system")

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 2, None)
    assert delivery.last_error.startswith("ConnectionRefusedError")


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_sends_nothing(local_targets, receiver):
    server = receiver()
    project = ProjectFactory()
    subscribe(project, server.url)

    def create_then_fail() -> None:
        with transaction.atomic():
            task_create(project=project, title="Never was", source="system")
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        create_then_fail()
    task_create(project=project, title="Committed", source="system")

    assert [json.loads(r["body"])["data"]["title"] for r in server.requests] == ["Committed"]
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1/hook", "resolves to 127.0.0.1, a loopback address"),
        ("https://[::1]/hook", "resolves to ::1, a loopback address"),
        ("https://10.0.0.1/hook", "resolves to 10.0.0.1, a private address"),
        ("https://192.168.1.1/hook", "resolves to 192.168.1.1, a private address"),
        ("https://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("https://0.0.0.0/hook", "resolves to 0.0.0.0, an unspecified address"),
        ("https://localhost/hook", "a loopback address"),
        ("https://[::ffff:127.0.0.1]/hook", "a loopback address"),
        # 6to4 and Teredo addresses carry an IPv4 address a relay would reach; site-local is internal.
        ("https://[2002:7f00:1::]/hook", "resolves to 2002:7f00:1::, a loopback address"),
        ("https://[2002:a00:1::]/hook", "resolves to 2002:a00:1::, a private address"),
        ("https://[fec0::1]/hook", "resolves to fec0::1, a site-local address"),
        (
            "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",
            "resolves to 2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ),
        ("https://100.64.0.1/hook", "a non-public address"),
        ("https://224.0.0.1/hook", "a multicast address"),
        ("http://93.184.215.14/hook", "Only https:// URLs are allowed."),
        ("https://user:pass@93.184.215.14/hook", "may not contain a user name or password"),
        ("ftp://93.184.215.14/hook", "Enter a valid http:// or https:// URL."),
        ("https://93.184.215.14/" + "a" * 2000, "at most 2000 characters"),
    ],
)
def test_internal_and_unsafe_targets_are_refused(url, message):
    project = ProjectFactory()

    with pytest.raises(ValidationError) as excinfo:
        subscribe(project, url)

    assert message in excinfo.value.message_dict["url"][0]
    assert not WebhookSubscription.objects.exists()


def test_a_public_address_is_accepted_and_allowed_networks_open_internal_ones(settings):
    webhook_url_validate(url="https://93.184.215.14:8443/hook")  # no error
    with pytest.raises(ValidationError):
        webhook_url_validate(url="https://10.1.2.3/hook")

    settings.APM_WEBHOOK_ALLOWED_NETWORKS = ["10.1.0.0/16"]

    webhook_url_validate(url="https://10.1.2.3/hook")
    with pytest.raises(ValidationError):
        webhook_url_validate(url="https://10.2.0.1/hook")


def test_the_target_is_checked_again_at_every_send(
    local_targets, receiver, django_capture_on_commit_callbacks
):
    server = receiver()
    project = ProjectFactory()
    subscribe(project, server.url)
    local_targets.APM_WEBHOOK_ALLOWED_NETWORKS = []  # the operator closes the door after subscribing

    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=project, title="Blocked", source="system")

    delivery = WebhookDelivery.objects.get()
    assert server.requests == []
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "a loopback address" in delivery.last_error


def test_dns_answers_are_checked_and_the_checked_address_is_the_one_connected_to(
    local_targets, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    """The request names the host (Host header) but goes to the address the check accepted; a name that
    resolves to an internal address by the time of sending (DNS rebinding) is refused then."""
    server = receiver()
    answers = {"hooks.example.test": "127.0.0.1"}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo(answers.get(host, host), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    project = ProjectFactory()
    subscribe(project, f"http://hooks.example.test:{server.port}/in")

    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=project, title="By name", source="system")
    answers["hooks.example.test"] = "10.0.0.7"  # rebinding to an internal address
    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=project, title="Rebound", source="system")

    [request] = server.requests
    assert request["headers"]["Host"] == f"hooks.example.test:{server.port}"
    rebound = WebhookDelivery.objects.filter(status="failed").get()
    assert "The host hooks.example.test resolves to a private address" in rebound.last_error
    assert "10.0.0.7" not in rebound.last_error  # the project's delivery log shows the error


def test_a_refused_name_is_answered_with_the_kind_of_address_and_logged_with_the_address(monkeypatch, caplog):
    """What an internal name resolves to is not told to the person who typed it (it would map the
    internal DNS for any project owner); operators read it in the log. A literal address is theirs."""
    answers = {"intranet.example.test": "10.20.30.40", "metadata.example.test": "169.254.169.254"}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo(answers.get(host, host), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    messages = []
    for url in ("https://intranet.example.test/hook", "https://metadata.example.test/latest/"):
        with pytest.raises(ValidationError) as excinfo:
            webhook_url_validate(url=url)
        messages.append(excinfo.value.message_dict["url"][0])
    with pytest.raises(ValidationError) as literal:
        webhook_url_validate(url="https://10.20.30.40/hook")

    assert messages[0].startswith("The host intranet.example.test resolves to a private address; ")
    assert messages[1].startswith("The host metadata.example.test resolves to a link-local address; ")
    assert "10.20.30.40" not in messages[0]
    assert "169.254" not in messages[1]
    assert "The host 10.20.30.40 resolves to 10.20.30.40, a private address" in literal.value.messages[0]
    logged = [record.getMessage() for record in caplog.records if record.name == "webhooks.services"]
    assert len(logged) == 3
    assert all("webhook_target_refused" in line for line in logged)
    assert "10.20.30.40" in logged[0]
    assert "169.254.169.254" in logged[1]


def test_only_active_subscriptions_to_the_event_receive_it(
    local_targets, receiver, django_capture_on_commit_callbacks
):
    server = receiver()
    project = ProjectFactory()
    subscribe(project, server.url, ["ingestion.finished"])
    subscribe(project, server.url, ["task.created"], is_active=False)
    subscribe(ProjectFactory(), server.url, ["task.created"])  # another project's

    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=project, title="Unheard", source="system")

    assert server.requests == []
    assert not WebhookDelivery.objects.exists()


def test_emitting_to_nobody_costs_one_query(django_assert_num_queries):
    project, without_subscriptions = ProjectFactory(), ProjectFactory()
    webhook_subscription_create(
        project=project, url="https://93.184.215.14/hook", events=["ingestion.failed"]
    )

    # the project's active subscriptions (none listens to task.created)
    with django_assert_num_queries(1):
        webhook_event_emit(project_id=project.pk, event="task.created", data={"key": "X-1"})
    with django_assert_num_queries(1):
        webhook_event_emit(project_id=without_subscriptions.pk, event="task.created", data={})


def test_unknown_events_are_refused():
    project = ProjectFactory()

    with pytest.raises(ValidationError) as excinfo:
        subscribe(project, "https://93.184.215.14/", ["task.created", "task.deleted"])
    with pytest.raises(ValueError, match="Unknown webhook event"):
        webhook_event_emit(project_id=project.pk, event="task.deleted", data={})

    assert "task.deleted" in excinfo.value.message_dict["events"][0]


@pytest.fixture
def root(tmp_path: Path, settings: Any) -> Path:
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    return tmp_path


def test_ingestion_finished_arrives_after_a_real_ingestion(
    root, local_targets, receiver, django_capture_on_commit_callbacks
):
    server = receiver()
    repo = GitRepo(root / "small")
    repo.write("README.md", "# Small\n")
    repo.commit("First")
    repo.write("src/app.py", "print('hi')\n")
    repo.write("README.md", "# Small\n\nMore.\n")
    tip = repo.commit("Second")
    project = ProjectFactory()
    repository = repository_register(project=project, source=str(repo.path), name="small")
    subscribe(project, server.url, ["ingestion.finished", "ingestion.failed"])

    with django_capture_on_commit_callbacks(execute=True):
        run = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND).run

    [request] = server.requests
    payload = json.loads(request["body"])
    data = payload["data"]
    assert request["headers"]["X-APM-Event"] == "ingestion.finished"
    assert {key: data[key] for key in ("run", "repository", "branch", "from_sha", "to_sha")} == {
        "run": run.pk,
        "repository": {"id": repository.pk, "name": "small"},
        "branch": "main",
        "from_sha": None,
        "to_sha": tip,
    }
    assert (data["commits_done"], data["file_changes"]) == (2, 3)
    assert data["duration_seconds"] >= 0


def test_ingestion_failed_arrives_with_the_reason(
    root, local_targets, receiver, django_capture_on_commit_callbacks
):
    server = receiver()
    repo = GitRepo(root / "failing")
    repo.commit("only", allow_empty=True)
    project = ProjectFactory()
    repository = repository_register(project=project, source=str(repo.path), name="failing")
    subscribe(project, server.url, ["ingestion.failed"])

    with django_capture_on_commit_callbacks(execute=True):
        run = ingestion_request(repository=repository, trigger="command", branch="no-such-branch").run

    run.refresh_from_db()
    [request] = server.requests
    data = json.loads(request["body"])["data"]
    assert run.status == "failed"
    assert data == {
        "run": run.pk,
        "repository": {"id": repository.pk, "name": "failing"},
        "reason": run.error,
    }


def test_a_delivery_is_never_sent_twice(local_targets, receiver, django_capture_on_commit_callbacks):
    server = receiver()
    project = ProjectFactory()
    subscribe(project, server.url)
    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=project, title="Once", source="system")
    delivery = WebhookDelivery.objects.get()

    again = webhook_deliver(delivery_id=str(delivery.delivery_id))
    missing = webhook_deliver(delivery_id=str(uuid.uuid4()))

    assert (again.status, again.sent, missing.status) == ("succeeded", False, "missing")
    assert len(server.requests) == 1


def test_a_duplicate_message_of_an_attempt_already_made_sends_nothing(local_targets, receiver):
    local_targets.APM_WEBHOOK_BACKOFF = 60  # the retry is due in about a minute
    server = receiver(503)
    project = ProjectFactory()
    subscribe(project, server.url)
    task_create(project=project, title="Pending", source="system")  # queued, not sent: no commit here
    delivery = WebhookDelivery.objects.get()

    first = webhook_deliver(delivery_id=str(delivery.delivery_id), attempt=0)
    duplicate = webhook_deliver(delivery_id=str(delivery.delivery_id), attempt=0)  # the same message again
    retry = webhook_deliver(delivery_id=str(delivery.delivery_id), attempt=1)

    assert (first.status, first.retry_in > 0, duplicate.sent, retry.status) == (
        "pending",
        True,
        False,
        "succeeded",
    )
    assert len(server.requests) == 2


def test_a_failed_delivery_can_be_sent_again(local_targets, receiver, django_capture_on_commit_callbacks):
    server = receiver(404)
    project = ProjectFactory()
    subscribe(project, server.url)
    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=project, title="Again", source="system")
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"

    with django_capture_on_commit_callbacks(execute=True):
        queued = webhook_delivery_redeliver(delivery=delivery)
    delivery.refresh_from_db()

    assert queued
    assert not webhook_delivery_redeliver(delivery=delivery)  # succeeded: nothing to redo
    assert (delivery.status, delivery.attempts, len(server.requests)) == ("succeeded", 1, 2)


def test_ping_sends_now_and_reports_the_answer(local_targets, receiver):
    server = receiver(500)
    project = ProjectFactory()
    subscription = subscribe(project, server.url, ["task.created", "ingestion.failed"])

    delivery = webhook_ping(subscription=subscription)

    [request] = server.requests
    assert request["headers"]["X-APM-Event"] == "ping"
    assert json.loads(request["body"])["data"] == {
        "subscription": subscription.pk,
        "events": ["task.created", "ingestion.failed"],
    }
    # A ping is a test: one attempt, no retries.
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 500)


def test_an_inactive_subscription_fails_its_queued_deliveries(local_targets, receiver):
    server = receiver()
    project = ProjectFactory()
    subscription = subscribe(project, server.url)
    task_create(project=project, title="Queued", source="system")
    webhook_subscription_update(subscription=subscription, is_active=False)

    outcome = webhook_deliver(delivery_id=str(WebhookDelivery.objects.get().delivery_id))

    assert (outcome.status, outcome.delivery.last_error) == ("failed", "The subscription is inactive.")
    assert server.requests == []


def test_rotating_the_secret_signs_with_the_new_one(
    local_targets, receiver, django_capture_on_commit_callbacks
):
    server = receiver()
    project = ProjectFactory()
    subscription = subscribe(project, server.url)
    old = subscription.secret

    new = webhook_subscription_secret_rotate(subscription=subscription)
    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=project, title="New key", source="system")

    [request] = server.requests
    assert new != old
    assert len(new) >= 43
    assert verify(new, request["headers"], request["body"])
    assert not verify(old, request["headers"], request["body"])


# --- Admin ---------------------------------------------------------------------------------------------


def test_admin_creates_a_subscription_and_shows_its_secret_once(admin_client, admin_user):
    project = ProjectFactory()
    url = reverse("admin:webhooks_webhooksubscription_add")
    form = {
        "project": project.pk,
        "url": "https://93.184.215.14/in",
        "events": ["task.created"],
        "is_active": "on",
    }

    refused = admin_client.post(url, {**form, "url": "https://169.254.169.254/"})
    created = admin_client.post(url, form, follow=True)

    assert refused.status_code == 200
    assert "a link-local address" in refused.context["adminform"].form.errors["url"][0]
    subscription = WebhookSubscription.objects.get()
    assert (subscription.created_by, subscription.events) == (admin_user, ["task.created"])
    shown = [str(message) for message in created.context["messages"]]
    assert any(subscription.secret in message for message in shown)
    change_page = admin_client.get(
        reverse("admin:webhooks_webhooksubscription_change", args=[subscription.pk])
    )
    assert subscription.secret not in change_page.content.decode()


def test_admin_rotates_secrets_and_sends_failed_deliveries_again(
    admin_client, local_targets, receiver, django_capture_on_commit_callbacks
):
    server = receiver(404)
    project = ProjectFactory()
    subscription = subscribe(project, server.url)
    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=project, title="Lost", source="system")
    delivery = WebhookDelivery.objects.get()

    rotated = admin_client.post(
        reverse("admin:webhooks_webhooksubscription_changelist"),
        {"action": "rotate_secret", "_selected_action": [subscription.pk]},
        follow=True,
    )
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:webhooks_webhookdelivery_changelist"),
            {"action": "send_again", "_selected_action": [delivery.pk]},
        )
    subscription.refresh_from_db()
    delivery.refresh_from_db()

    assert any(subscription.secret in str(message) for message in rotated.context["messages"])
    assert (delivery.status, len(server.requests)) == ("succeeded", 2)
    assert verify(subscription.secret, server.requests[1]["headers"], server.requests[1]["body"])


# The row-estimate lookup of EstimatedCountPaginator; SQLite has no statistics to read.
ESTIMATE = 0 if os.environ.get("DATABASE_URL", "sqlite").startswith("sqlite") else 1


def test_the_delivery_log_costs_the_same_for_1_and_50_rows(admin_client, django_assert_num_queries):
    subscription = subscribe(ProjectFactory(), "https://93.184.215.14/in")

    def add_rows(n: int) -> None:
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                subscription=subscription, event="task.created", delivery_id=uuid.uuid4(), payload={}
            )
            for _ in range(n)
        )

    # 1 session, 2 user, 3 COUNT for the paginator (no second COUNT: show_full_result_count = False),
    # 4 the rows with their subscription joined, payloads left out (the filters need no query)
    url = reverse("admin:webhooks_webhookdelivery_changelist")
    assert_changelist_queries_fixed(admin_client, django_assert_num_queries, url, add_rows, 4 + ESTIMATE)


def test_an_attempt_that_died_with_its_worker_is_taken_over(local_targets, receiver):
    server = receiver()
    project = ProjectFactory()
    subscribe(project, server.url)
    task_create(project=project, title="Orphan", source="system")  # queued, not sent: no commit here
    delivery = WebhookDelivery.objects.get()
    # A worker claimed attempt 1 and died before sending: the row counts it, nothing was sent.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=1, next_attempt_at=timezone.now() + datetime.timedelta(minutes=1)
    )
    before_its_time = webhook_deliver(delivery_id=str(delivery.delivery_id), attempt=0)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - datetime.timedelta(seconds=1)
    )

    redelivered = webhook_deliver(delivery_id=str(delivery.delivery_id), attempt=0)

    assert (before_its_time.sent, redelivered.status) == (False, "succeeded")
    assert len(server.requests) == 1


def test_stalled_deliveries_are_resumed_by_the_schedule(
    local_targets, receiver, django_capture_on_commit_callbacks
):
    server = receiver()
    project = ProjectFactory()
    subscribe(project, server.url)
    task_create(project=project, title="Never enqueued", source="system")  # as if the broker was down
    WebhookDelivery.objects.update(created_at=timezone.now() - datetime.timedelta(minutes=10))
    task_create(project=project, title="Just queued", source="system")  # recent: left to its own message

    resumed = webhook_deliveries_resume_task.apply().get()

    assert resumed == 1
    assert [json.loads(r["body"])["data"]["title"] for r in server.requests] == ["Never enqueued"]


def test_a_url_with_non_ascii_characters_is_sent_percent_encoded(local_targets, receiver):
    server = receiver()
    project = ProjectFactory()
    subscription = subscribe(project, f"http://127.0.0.1:{server.port}/häk?team=é", events=["task.created"])

    delivery = webhook_ping(subscription=subscription)

    assert delivery.status == "succeeded"
    assert server.requests[0]["path"] == "/h%C3%A4k?team=%C3%A9"


def test_a_binary_answer_is_recorded(local_targets, receiver):
    server = receiver(500, body=b"\x00\xffbinary\x00")
    project = ProjectFactory()
    subscription = subscribe(project, server.url)

    delivery = webhook_ping(subscription=subscription)

    assert (delivery.status, delivery.last_status_code) == ("failed", 500)
    assert delivery.response_excerpt == "\ufffd\ufffdbinary\ufffd"


def test_only_operators_who_may_change_deliveries_send_them_again(client, receiver, local_targets):
    server = receiver(404)
    project = ProjectFactory()
    subscription = subscribe(project, server.url)
    delivery = webhook_ping(subscription=subscription)
    viewer = UserFactory(username="auditor", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client.force_login(viewer)
    url = reverse("admin:webhooks_webhookdelivery_changelist")

    page = client.get(url)
    client.post(url, {"action": "send_again", "_selected_action": [delivery.pk]})

    assert page.status_code == 200
    assert "send_again" not in page.content.decode()
    delivery.refresh_from_db()
    assert (delivery.status, len(server.requests)) == ("failed", 1)
