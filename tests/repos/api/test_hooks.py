"""The push webhook (``POST /api/v1/hooks/push/``) as GitHub, Gitea and GitLab call it.

No login: the repository's own webhook secret is the credential (an HMAC-SHA256 signature of the exact
body, or GitLab's token). The world's repository ``alpha-repo`` is registered as
``https://git.example.com/team/alpha.git`` and follows ``main``.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

import repos.services
from repos.models import Commit, IngestionRun, PushDelivery, Repository
from repos.services import (
    IngestionRequest,
    push_deliveries_purge,
    push_delivery_receive,
    repository_register,
)
from repos.tasks import push_deliveries_purge_task
from tests.admin_helpers import assert_changelist_queries_fixed
from tests.factories import ProjectFactory, RepositoryFactory
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db

HOOK = "/api/v1/hooks/push/"
SOURCE = "https://git.example.com/team/alpha.git"
AFTER = "a" * 40
ZERO = "0" * 40


def github_payload(
    *, ref: str = "refs/heads/main", after: str = AFTER, clone_url: str = SOURCE, **extra: Any
) -> dict[str, Any]:
    return {
        "ref": ref,
        "before": "b" * 40,
        "after": after,
        "repository": {"clone_url": clone_url, "default_branch": "main", "full_name": "team/alpha"},
        **extra,
    }


def gitlab_payload(*, ref: str = "refs/heads/main", after: str = AFTER, url: str = SOURCE) -> dict[str, Any]:
    return {
        "object_kind": "push",
        "ref": ref,
        "after": after,
        "project": {"git_http_url": url, "default_branch": "main"},
    }


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(body: bytes | str, *, query: str = "", **headers: str) -> Any:
    """POST ``body`` exactly as given (its signature covers these bytes), with ``headers`` as META."""
    raw = body.encode() if isinstance(body, str) else body
    return APIClient().post(HOOK + query, data=raw, content_type="application/json", **headers)


def github_push(
    payload: dict[str, Any], secret: str, *, event: str = "push", query: str = "", delivery: str = ""
) -> Any:
    body = json.dumps(payload).encode()
    headers = {"HTTP_X_GITHUB_DELIVERY": delivery} if delivery else {}
    return post(
        body,
        query=query,
        HTTP_X_GITHUB_EVENT=event,
        HTTP_X_HUB_SIGNATURE_256=f"sha256={signature(secret, body)}",
        **headers,
    )


def runs(repository: Repository) -> list[IngestionRun]:
    return list(repository.ingestion_runs.filter(trigger=IngestionRun.Trigger.WEBHOOK))


@pytest.fixture
def repository(world) -> Repository:
    repository = world.objects["repository"]
    assert repository.source == SOURCE
    assert repository.webhook_secret
    return repository


# --- GitHub -------------------------------------------------------------------------------------------


def test_a_signed_github_push_queues_one_webhook_run(repository: Repository):
    response = github_push(github_payload(), repository.webhook_secret)

    assert response.status_code == 202, response.content
    run = IngestionRun.objects.get(repository=repository, trigger="webhook")
    assert run.status == IngestionRun.Status.QUEUED
    assert run.branch == "main"
    assert response.json()["runs"] == [{"repository": repository.pk, "run": run.pk, "created": True}]
    assert isinstance(response.json()["detail"], str)


def test_another_push_while_a_run_is_queued_returns_that_run(repository: Repository):
    first = github_push(github_payload(), repository.webhook_secret, delivery="d-1")
    second = github_push(github_payload(after="f" * 40), repository.webhook_secret, delivery="d-2")

    assert (first.status_code, second.status_code) == (202, 202)
    run = first.json()["runs"][0]["run"]
    assert second.json()["runs"] == [{"repository": repository.pk, "run": run, "created": False}]
    assert len(runs(repository)) == 1


@pytest.mark.parametrize(
    "header",
    [
        "sha256=" + "0" * 64,
        "sha256=",
        "sha1=" + "0" * 40,
        "0" * 64,
    ],
)
def test_a_bad_signature_is_403_and_queues_nothing(repository: Repository, header: str):
    body = json.dumps(github_payload()).encode()

    response = post(body, HTTP_X_GITHUB_EVENT="push", HTTP_X_HUB_SIGNATURE_256=header)

    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    assert set(response.json()) == {"detail"}
    assert not IngestionRun.objects.filter(trigger="webhook").exists()


@pytest.mark.parametrize(
    ("shape", "url"),
    [
        ("github", "https://x/a\\u0000b"),
        ("github", "https://x/\\ud800"),
        ("gitlab", "a\\u0000"),
        ("gitlab", "https://x/\\udfff.git"),
    ],
)
def test_a_payload_url_the_database_cannot_hold_is_a_403_not_a_500(
    repository: Repository, shape: str, url: str
):
    """Without ?repository= the payload's URLs are looked up before any secret is known: a NUL or a lone
    surrogate in one failed that query, a 500 anyone could cause."""
    key = "project" if shape == "gitlab" else "repository"
    field = "git_http_url" if shape == "gitlab" else "clone_url"
    body = f'{{"ref": "refs/heads/main", "{key}": {{"{field}": "{url}"}}}}'
    headers = (
        {"HTTP_X_GITLAB_EVENT": "Push Hook", "HTTP_X_GITLAB_TOKEN": "wrong"}
        if shape == "gitlab"
        else {"HTTP_X_GITHUB_EVENT": "push", "HTTP_X_HUB_SIGNATURE_256": "sha256=00"}
    )

    response = post(body, **headers)

    assert response.status_code == 403, response.content
    assert not PushDelivery.objects.exists()


def test_a_signature_of_another_body_is_403(repository: Repository):
    signed = json.dumps(github_payload(ref="refs/heads/feature")).encode()
    sent = json.dumps(github_payload()).encode()

    response = post(
        sent,
        HTTP_X_GITHUB_EVENT="push",
        HTTP_X_HUB_SIGNATURE_256=f"sha256={signature(repository.webhook_secret, signed)}",
    )

    assert response.status_code == 403
    assert not runs(repository)


def test_an_unsigned_push_is_403(repository: Repository):
    response = post(json.dumps(github_payload()), HTTP_X_GITHUB_EVENT="push")

    assert response.status_code == 403
    assert not runs(repository)


def test_the_secret_of_another_repository_does_not_verify(world, repository: Repository):
    other = world.objects["other_repository"]
    assert other.webhook_secret != repository.webhook_secret

    response = github_push(github_payload(), other.webhook_secret)

    assert response.status_code == 403
    assert not IngestionRun.objects.filter(trigger="webhook").exists()


def test_a_repository_without_a_secret_never_verifies(repository: Repository):
    Repository.objects.filter(pk=repository.pk).update(webhook_secret="")
    body = json.dumps(github_payload()).encode()

    response = post(
        body, HTTP_X_GITHUB_EVENT="push", HTTP_X_HUB_SIGNATURE_256=f"sha256={signature('', body)}"
    )

    assert response.status_code == 403
    assert not runs(repository)


def test_a_github_ping_is_answered_200_and_queues_nothing(repository: Repository):
    payload = {"zen": "Keep it logically awesome.", "hook_id": 1, "repository": {"clone_url": SOURCE}}

    response = github_push(payload, repository.webhook_secret, event="ping")

    assert response.status_code == 200
    assert "pong" in response.json()["detail"].lower()
    assert not runs(repository)


def test_an_unsigned_ping_is_403(repository: Repository):
    payload = {"zen": "Hi", "repository": {"clone_url": SOURCE}}

    assert post(json.dumps(payload), HTTP_X_GITHUB_EVENT="ping").status_code == 403


def test_other_events_are_ignored(repository: Repository):
    response = github_push(github_payload(), repository.webhook_secret, event="issues")

    assert response.status_code == 200
    assert response.json()["detail"].startswith("Ignored")
    assert not runs(repository)


def test_a_push_to_another_branch_is_ignored(repository: Repository):
    response = github_push(github_payload(ref="refs/heads/feature"), repository.webhook_secret)

    assert response.status_code == 200
    assert response.json()["detail"].startswith("Ignored")
    assert not runs(repository)


def test_a_tag_push_is_ignored(repository: Repository):
    response = github_push(github_payload(ref="refs/tags/main"), repository.webhook_secret)

    assert response.status_code == 200
    assert not runs(repository)


def test_a_branch_deletion_is_ignored(repository: Repository):
    response = github_push(github_payload(after=ZERO, deleted=True), repository.webhook_secret)

    assert response.status_code == 200
    assert response.json()["detail"].startswith("Ignored")
    assert not runs(repository)


def test_the_payloads_default_branch_is_used_when_the_repository_names_none(repository: Repository):
    Repository.objects.filter(pk=repository.pk).update(default_branch="")
    payload = github_payload(ref="refs/heads/trunk")
    payload["repository"]["default_branch"] = "trunk"

    assert github_push(payload, repository.webhook_secret).status_code == 202
    assert github_push(github_payload(ref="refs/heads/other"), repository.webhook_secret).status_code == 200
    assert len(runs(repository)) == 1


@pytest.mark.parametrize(
    "body",
    ["[1, 2, 3]", '"a string"', "42", "null", "not json at all", "{unterminated", "", "\xff\xfe"],
)
def test_a_body_that_is_not_a_json_object_is_400(repository: Repository, body: str):
    raw = body.encode("latin-1")

    response = post(
        raw,
        HTTP_X_GITHUB_EVENT="push",
        HTTP_X_HUB_SIGNATURE_256=f"sha256={signature(repository.webhook_secret, raw)}",
    )

    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert "JSON object" in response.json()["detail"]
    assert not runs(repository)


@pytest.mark.parametrize(
    "clone_url",
    [
        "https://git.example.com/team/alpha",
        "https://git.example.com/team/alpha.git",
        "https://git.example.com/team/alpha/",
        "https://git.example.com/team/alpha.git/",
    ],
)
def test_source_matching_tolerates_the_git_suffix_and_a_slash(repository: Repository, clone_url: str):
    response = github_push(github_payload(clone_url=clone_url), repository.webhook_secret)

    assert response.status_code == 202, response.content
    assert response.json()["runs"][0]["repository"] == repository.pk


def test_a_source_registered_without_git_suffix_matches_a_payload_with_it(world):
    repository = world.objects["repository"]
    Repository.objects.filter(pk=repository.pk).update(source="https://git.example.com/team/alpha")

    response = github_push(github_payload(clone_url=SOURCE), repository.webhook_secret)

    assert response.status_code == 202, response.content
    assert response.json()["runs"][0]["repository"] == repository.pk


def test_the_html_url_also_identifies_the_repository(repository: Repository):
    payload = github_payload(clone_url="https://elsewhere.example.com/x.git")
    payload["repository"]["html_url"] = "https://git.example.com/team/alpha"

    assert github_push(payload, repository.webhook_secret).status_code == 202


def test_an_unknown_source_is_403(repository: Repository):
    payload = github_payload(clone_url="https://git.example.com/team/unknown.git")

    assert github_push(payload, repository.webhook_secret).status_code == 403
    assert not runs(repository)


def test_a_push_larger_than_djangos_form_limit_is_accepted(repository: Repository, settings):
    # GitHub sends up to 25 MB; DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) is a limit for forms, not for pushes.
    commit = {"id": "c" * 40, "message": "x" * 1000, "added": [f"src/file_{n}.py" for n in range(40)]}
    payload = github_payload(commits=[commit] * 2048)
    assert len(json.dumps(payload)) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = github_push(payload, repository.webhook_secret, query=f"?repository={repository.pk}")

    assert response.status_code == 202, response.content[:200]
    assert len(runs(repository)) == 1


def test_a_push_larger_than_the_payload_limit_is_413(repository: Repository, monkeypatch):
    monkeypatch.setattr("repos.api.hooks.MAX_PAYLOAD_BYTES", 1024)
    payload = github_payload(padding="x" * 2000)

    response = github_push(payload, repository.webhook_secret, query=f"?repository={repository.pk}")

    assert response.status_code == 413
    assert set(response.json()) == {"detail"}
    assert not runs(repository)


# --- Verified before parsed -----------------------------------------------------------------------------

BIG = 24 * 1024 * 1024  # what the review sent: 0.9 s and 492 MB of worker when it was parsed first
BOGUS = "sha256=" + "0" * 64


def test_a_large_bogus_signed_body_is_refused_before_it_is_parsed(repository: Repository):
    body = b"{" + b"x" * BIG  # not JSON: parsed before verified, it was answered 400

    response = post(
        body, query=f"?repository={repository.pk}", HTTP_X_GITHUB_EVENT="push", HTTP_X_HUB_SIGNATURE_256=BOGUS
    )

    assert response.status_code == 403
    assert set(response.json()) == {"detail"}
    assert not PushDelivery.objects.exists()


def test_a_large_bogus_signed_body_costs_a_small_multiple_of_its_size_in_memory(repository: Repository):
    # Valid JSON that parses into 12 million list items: about 150 MB of Python objects if it were parsed.
    body = b'{"commits": [' + b"0," * (BIG // 2) + b"0]}"
    tracemalloc.start()
    try:
        response = post(
            body,
            query=f"?repository={repository.pk}",
            HTTP_X_GITHUB_EVENT="push",
            HTTP_X_HUB_SIGNATURE_256=BOGUS,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 403
    # The test client's own copy of the body is one multiple; the view reads it in 64 KiB chunks into a
    # buffer that spills to disk past 1 MiB, and parses nothing.
    assert peak < 1.5 * len(body), f"peak {peak / 2**20:.0f} MiB for a body of {len(body) / 2**20:.0f} MiB"


def test_a_signed_push_of_24_mb_is_accepted(repository: Repository):
    payload = github_payload(padding="x" * BIG)

    response = github_push(payload, repository.webhook_secret, query=f"?repository={repository.pk}")

    assert response.status_code == 202, response.content[:200]
    assert len(runs(repository)) == 1


def test_without_the_repository_parameter_only_a_small_body_is_parsed(repository: Repository, settings):
    settings.APM_PUSH_UNVERIFIED_MAX_BYTES = 4096
    payload = github_payload(padding="x" * 8192)

    without = github_push(payload, repository.webhook_secret, delivery="d-1")
    named = github_push(
        payload, repository.webhook_secret, delivery="d-2", query=f"?repository={repository.pk}"
    )

    assert without.status_code == 413
    assert "?repository=<id>" in without.json()["detail"]
    assert named.status_code == 202, named.content
    assert len(runs(repository)) == 1


def test_the_unverified_limit_is_one_mib_by_default(repository: Repository):
    payload = github_payload(padding="x" * (1024 * 1024))

    response = github_push(payload, repository.webhook_secret)

    assert response.status_code == 413
    assert "?repository=<id>" in response.json()["detail"]
    assert not runs(repository)


def test_a_named_repository_and_a_gitlab_token_are_checked_before_the_body_is_read(
    world, repository: Repository, monkeypatch
):
    # A body over the limit shows whether it was read: 413 if it was, 403 if the request was refused first.
    monkeypatch.setattr("repos.api.hooks.MAX_PAYLOAD_BYTES", 1024)
    body = json.dumps({**gitlab_payload(), "padding": "x" * 4096})
    query = f"?repository={repository.pk}"

    wrong_token = post(body, query=query, HTTP_X_GITLAB_EVENT="Push Hook", HTTP_X_GITLAB_TOKEN="wrong")
    unknown = post(body, query="?repository=999999", HTTP_X_GITLAB_EVENT="Push Hook", HTTP_X_GITLAB_TOKEN="x")
    right_token = post(
        body, query=query, HTTP_X_GITLAB_EVENT="Push Hook", HTTP_X_GITLAB_TOKEN=repository.webhook_secret
    )

    assert (wrong_token.status_code, unknown.status_code, right_token.status_code) == (403, 403, 413)
    assert not runs(repository)


def test_the_url_given_with_the_secret_names_the_repository(world, repository: Repository):
    rotated = world.client("maintainer").post(f"/api/v1/repositories/{repository.pk}/webhook-secret/")

    url = rotated.json()["webhook_url"]
    assert url == f"http://testserver{HOOK}?repository={repository.pk}"
    payload = github_payload(padding="x" * (2 * 1024 * 1024))  # over the unverified limit: needs the id
    response = github_push(
        payload, rotated.json()["webhook_secret"], query=url.removeprefix(f"http://testserver{HOOK}")
    )
    assert response.status_code == 202, response.content[:200]


def test_registering_gives_the_url_with_the_secret(world, tmp_path: Path, settings):
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    repo = GitRepo(tmp_path / "svc")
    repo.write("a.py", "x = 1\n")
    repo.commit("One")

    created = world.client("staff").post(
        "/api/v1/repositories/", {"project": "ALPHA", "source": str(repo.path), "name": "svc"}, format="json"
    )

    assert created.status_code == 201, created.content
    data = created.json()
    assert data["webhook_url"] == f"http://testserver{HOOK}?repository={data['id']}"


# --- Gitea and GitLab ---------------------------------------------------------------------------------


def test_a_signed_gitea_push_is_accepted(repository: Repository):
    body = json.dumps(github_payload()).encode()

    response = post(
        body, HTTP_X_GITEA_EVENT="push", HTTP_X_GITEA_SIGNATURE=signature(repository.webhook_secret, body)
    )

    assert response.status_code == 202, response.content
    assert response.json()["runs"][0]["created"] is True
    assert len(runs(repository)) == 1


def test_a_badly_signed_gitea_push_is_403(repository: Repository):
    body = json.dumps(github_payload()).encode()

    response = post(body, HTTP_X_GITEA_EVENT="push", HTTP_X_GITEA_SIGNATURE=signature("wrong", body))

    assert response.status_code == 403
    assert not runs(repository)


def test_a_gitlab_push_with_the_right_token_is_accepted(repository: Repository):
    response = post(
        json.dumps(gitlab_payload()),
        HTTP_X_GITLAB_EVENT="Push Hook",
        HTTP_X_GITLAB_TOKEN=repository.webhook_secret,
    )

    assert response.status_code == 202, response.content
    [run] = runs(repository)
    assert response.json()["runs"] == [{"repository": repository.pk, "run": run.pk, "created": True}]


@pytest.mark.parametrize("token", ["wrong", "", "webhook-secret"])
def test_a_gitlab_push_with_a_wrong_token_is_403(repository: Repository, token: str):
    response = post(json.dumps(gitlab_payload()), HTTP_X_GITLAB_EVENT="Push Hook", HTTP_X_GITLAB_TOKEN=token)

    assert response.status_code == 403
    assert not runs(repository)


def test_a_gitlab_push_without_a_token_is_403(repository: Repository):
    response = post(json.dumps(gitlab_payload()), HTTP_X_GITLAB_EVENT="Push Hook")

    assert response.status_code == 403
    assert not runs(repository)


def test_a_gitlab_push_to_another_branch_is_ignored(repository: Repository):
    response = post(
        json.dumps(gitlab_payload(ref="refs/heads/feature")),
        HTTP_X_GITLAB_EVENT="Push Hook",
        HTTP_X_GITLAB_TOKEN=repository.webhook_secret,
    )

    assert response.status_code == 200
    assert not runs(repository)


# --- Repositories registered by local path --------------------------------------------------------------


@pytest.fixture
def local(world, tmp_path: Path, settings) -> tuple[GitRepo, Repository]:
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    repo = GitRepo(tmp_path / "service")
    for number in range(3):
        repo.write(f"module_{number}.py", "x = 1\n" * (number + 1))
        repo.commit(f"Add module {number}")
    repository = repository_register(project=world.project, source=str(repo.path))
    assert repository.kind == Repository.Kind.LOCAL
    return repo, repository


def test_the_repository_parameter_selects_a_local_repository(local):
    repo, repository = local
    payload = github_payload(
        after=repo.head(), clone_url="https://git.example.com/team/mirror-of-service.git"
    )

    without = github_push(payload, repository.webhook_secret)
    with_id = github_push(payload, repository.webhook_secret, query=f"?repository={repository.pk}")

    assert without.status_code == 403
    assert with_id.status_code == 202, with_id.content
    [run] = runs(repository)
    assert with_id.json()["runs"] == [{"repository": repository.pk, "run": run.pk, "created": True}]


@pytest.mark.parametrize("value", ["abc", "-1", "1.0", "99999999999999999999999999"])
def test_a_bad_repository_parameter_is_403(local, value: str):
    _repo, repository = local

    response = github_push(github_payload(), repository.webhook_secret, query=f"?repository={value}")

    assert response.status_code == 403
    assert not runs(repository)


def test_the_repository_parameter_still_needs_that_repositorys_secret(world, local):
    _repo, repository = local

    response = github_push(
        github_payload(), world.objects["repository"].webhook_secret, query=f"?repository={repository.pk}"
    )

    assert response.status_code == 403
    assert not IngestionRun.objects.filter(trigger="webhook").exists()


def test_a_webhook_push_ingests_a_local_repository(local, django_capture_on_commit_callbacks):
    repo, repository = local
    payload = github_payload(after=repo.head())

    with django_capture_on_commit_callbacks(execute=True):
        response = github_push(payload, repository.webhook_secret, query=f"?repository={repository.pk}")

    assert response.status_code == 202, response.content
    run = IngestionRun.objects.get(pk=response.json()["runs"][0]["run"])
    assert (run.status, run.error) == (IngestionRun.Status.SUCCEEDED, "")
    assert run.trigger == IngestionRun.Trigger.WEBHOOK
    assert run.to_sha == repo.head()
    assert set(Commit.objects.filter(repository=repository).values_list("sha", flat=True)) == repo.rev_list()
    repository.refresh_from_db()
    assert repository.last_ingested_sha == repo.head()

    # The next push brings only the new commit.
    repo.write("module_9.py", "y = 2\n")
    repo.commit("One more")
    with django_capture_on_commit_callbacks(execute=True):
        again = github_push(
            github_payload(after=repo.head()), repository.webhook_secret, query=f"?repository={repository.pk}"
        )

    assert again.status_code == 202
    second = IngestionRun.objects.get(pk=again.json()["runs"][0]["run"])
    assert (second.status, second.commits_done) == (IngestionRun.Status.SUCCEEDED, 1)
    assert Commit.objects.filter(repository=repository).count() == 4


# --- Rotation and throttling --------------------------------------------------------------------------


def test_rotating_the_secret_retires_the_old_one(world, repository: Repository):
    old = repository.webhook_secret

    response = world.client("maintainer").post(f"/api/v1/repositories/{repository.pk}/webhook-secret/")

    assert response.status_code == 200
    new = response.json()["webhook_secret"]
    assert new
    assert new != old
    repository.refresh_from_db()
    assert repository.webhook_secret == new
    assert github_push(github_payload(), old).status_code == 403
    assert not runs(repository)
    assert github_push(github_payload(), new).status_code == 202
    assert len(runs(repository)) == 1


@pytest.mark.parametrize("who", ["member", "viewer"])
def test_only_owners_and_maintainers_rotate_the_secret(world, repository: Repository, who: str):
    old = repository.webhook_secret

    response = world.client(who).post(f"/api/v1/repositories/{repository.pk}/webhook-secret/")

    assert response.status_code == 403
    assert "webhook_secret" not in response.json()
    repository.refresh_from_db()
    assert repository.webhook_secret == old
    assert github_push(github_payload(), old).status_code == 202


def test_the_webhook_secret_is_not_shown_in_the_repository_detail(world, repository: Repository):
    response = world.client("owner").get(f"/api/v1/repositories/{repository.pk}/")

    assert response.status_code == 200
    assert repository.webhook_secret not in response.content.decode()


def test_the_webhook_is_throttled(repository: Repository, settings):
    settings.APM_API_THROTTLE_RATES = {
        "user": "1000/min",
        "anon": "1000/min",
        "tokens": "1000/min",
        "hooks": "2/min",
    }
    payload = {"zen": "Hi", "repository": {"clone_url": SOURCE}}

    answers = [github_push(payload, repository.webhook_secret, event="ping") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert int(answers[2]["Retry-After"]) > 0
    assert answers[2]["Content-Type"].startswith("application/json")
    assert set(answers[2].json()) == {"detail"}


def test_a_push_to_a_switched_off_repository_is_ignored(repository: Repository):
    Repository.objects.filter(pk=repository.pk).update(is_active=False)

    response = github_push(github_payload(), repository.webhook_secret)

    assert response.status_code == 200
    assert "is_active" in response.json()["detail"]
    assert not runs(repository)


# --- Hostile input: a clear answer, never a 500 ---------------------------------------------------------


@pytest.mark.parametrize("value", ["²", "١٢", "9" * 40])
def test_a_repository_parameter_that_is_not_an_id_is_403(repository: Repository, value: str):
    response = github_push(github_payload(), repository.webhook_secret, query=f"?repository={value}")

    assert response.status_code == 403


@pytest.mark.parametrize("header", ["HTTP_X_HUB_SIGNATURE_256", "HTTP_X_GITEA_SIGNATURE"])
def test_a_signature_with_non_ascii_characters_is_403(repository: Repository, header: str):
    body = json.dumps(github_payload()).encode()
    value = "sha256=é" + "0" * 63 if header == "HTTP_X_HUB_SIGNATURE_256" else "é" * 64

    response = post(body, HTTP_X_GITHUB_EVENT="push", **{header: value})

    assert response.status_code == 403
    assert not runs(repository)


def test_deeply_nested_json_is_400(repository: Repository):
    body = "[" * 100_000 + "]" * 100_000

    response = post(
        body, HTTP_X_HUB_SIGNATURE_256=f"sha256={signature(repository.webhook_secret, body.encode())}"
    )

    assert response.status_code == 400


# --- Deliveries sent again ------------------------------------------------------------------------------


def test_a_delivery_sent_again_starts_nothing_however_often(local, django_capture_on_commit_callbacks):
    repo, repository = local
    payload = github_payload(after=repo.head())
    query = f"?repository={repository.pk}"
    with django_capture_on_commit_callbacks(execute=True):
        first = github_push(payload, repository.webhook_secret, query=query, delivery="d-1")
    assert first.status_code == 202, first.content
    run = first.json()["runs"][0]["run"]
    assert IngestionRun.objects.get(pk=run).status == IngestionRun.Status.SUCCEEDED

    with django_capture_on_commit_callbacks(execute=True):
        again = [
            github_push(payload, repository.webhook_secret, query=query, delivery="d-1") for _ in range(5)
        ]
        # The id is a header outside the signature: the same signed body under another id, or none, is
        # the same delivery.
        again.append(github_push(payload, repository.webhook_secret, query=query, delivery="d-forged"))
        again.append(github_push(payload, repository.webhook_secret, query=query))

    assert [answer.status_code for answer in again] == [200] * 7
    for answer in again:
        assert answer.json()["runs"] == [{"repository": repository.pk, "run": run, "created": False}]
        assert answer.json()["detail"].startswith("Already received")
        assert f"ingestion runs it started: {run}" in answer.json()["detail"]
    assert list(IngestionRun.objects.filter(repository=repository).values_list("pk", flat=True)) == [run]
    delivery = PushDelivery.objects.get()
    assert (delivery.repository_id, delivery.delivery_id, delivery.run_id) == (repository.pk, "d-1", run)


def test_a_new_delivery_after_a_run_starts_the_next_run(local, django_capture_on_commit_callbacks):
    repo, repository = local
    query = f"?repository={repository.pk}"
    with django_capture_on_commit_callbacks(execute=True):
        first = github_push(
            github_payload(after=repo.head()), repository.webhook_secret, query=query, delivery="d-1"
        )
    repo.write("more.py", "y = 2\n")
    repo.commit("More")
    with django_capture_on_commit_callbacks(execute=True):
        second = github_push(
            github_payload(after=repo.head()), repository.webhook_secret, query=query, delivery="d-2"
        )

    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json()["runs"][0]["created"] is True
    assert IngestionRun.objects.filter(repository=repository).count() == 2
    assert PushDelivery.objects.count() == 2


@pytest.mark.parametrize(
    ("headers", "header"),
    [
        ({"HTTP_X_GITEA_EVENT": "push"}, "HTTP_X_GITEA_DELIVERY"),
        ({"HTTP_X_GITLAB_EVENT": "Push Hook"}, "HTTP_X_GITLAB_EVENT_UUID"),
    ],
)
def test_gitea_and_gitlab_deliveries_are_known_by_their_ids(repository: Repository, headers, header):
    def send(body: bytes) -> Any:
        if "HTTP_X_GITLAB_EVENT" in headers:
            auth = {"HTTP_X_GITLAB_TOKEN": repository.webhook_secret}
        else:
            auth = {"HTTP_X_GITEA_SIGNATURE": signature(repository.webhook_secret, body)}
        return post(body, **headers, **auth, **{header: "5f0c2b1e-delivery"})

    payload = gitlab_payload() if "HTTP_X_GITLAB_EVENT" in headers else github_payload()
    first = send(json.dumps(payload).encode())
    IngestionRun.objects.update(status=IngestionRun.Status.SUCCEEDED)  # the run is over
    again = send(json.dumps(payload, indent=2).encode())  # the same delivery, spelled differently

    assert (first.status_code, again.status_code) == (202, 200), again.content
    assert again.json()["detail"].startswith("Already received")
    assert len(runs(repository)) == 1
    assert PushDelivery.objects.get().delivery_id == "5f0c2b1e-delivery"


def test_a_request_that_fails_verification_records_no_delivery(repository: Repository):
    body = json.dumps(github_payload()).encode()

    forged = post(
        body, HTTP_X_GITHUB_EVENT="push", HTTP_X_HUB_SIGNATURE_256=BOGUS, HTTP_X_GITHUB_DELIVERY="d-1"
    )
    genuine = github_push(github_payload(), repository.webhook_secret, delivery="d-1")

    assert (forged.status_code, genuine.status_code) == (403, 202)
    assert PushDelivery.objects.get().run_id == genuine.json()["runs"][0]["run"]


def test_pings_and_pushes_apm_does_not_follow_are_recorded_without_a_run(repository: Repository):
    ping = github_push(
        {"zen": "Hi", "repository": {"clone_url": SOURCE}}, repository.webhook_secret, event="ping"
    )
    other_branch = github_push(github_payload(ref="refs/heads/feature"), repository.webhook_secret)
    ping_again = github_push(
        {"zen": "Hi", "repository": {"clone_url": SOURCE}}, repository.webhook_secret, event="ping"
    )

    assert (ping.status_code, other_branch.status_code, ping_again.status_code) == (200, 200, 200)
    assert "pong" in ping.json()["detail"].lower()
    assert ping_again.json() == {
        "detail": ping_again.json()["detail"],
        "runs": [{"repository": repository.pk, "run": None, "created": False}],
    }
    assert "ingestion runs it started: none" in ping_again.json()["detail"]
    assert list(PushDelivery.objects.values_list("run", flat=True)) == [None, None]
    assert not runs(repository)


@pytest.mark.django_db(transaction=True)
def test_a_failure_after_the_commit_takes_the_delivery_with_it(monkeypatch):
    """A broker that refuses the run's message fails the request after the delivery was committed (the
    run is removed by then): the record goes too, so the sender's retry is a first delivery."""
    repository = RepositoryFactory()

    def broker_refuses(run_id: int) -> None:  # what the enqueue at commit does when the broker is down
        IngestionRun.objects.filter(pk=run_id).delete()
        raise ConnectionError("the broker is down")

    def ingestion_request(*, repository: Repository, trigger: str) -> IngestionRequest:
        run = IngestionRun.objects.create(repository=repository, trigger=trigger)
        transaction.on_commit(lambda: broker_refuses(run.pk))
        return IngestionRequest(run=run, created=True)

    monkeypatch.setattr("repos.services.ingestion_request", ingestion_request)
    delivery = {"repository": repository, "delivery_id": "d-1", "body_sha256": "b" * 64}

    with pytest.raises(ConnectionError):
        push_delivery_receive(**delivery, ingest=True)
    assert not PushDelivery.objects.exists()
    assert not IngestionRun.objects.exists()

    retried = push_delivery_receive(**delivery, ingest=False)
    assert retried.replayed is False
    assert PushDelivery.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_copies_of_a_delivery_at_once_start_one_run(tmp_path: Path, settings, monkeypatch):
    """The unique constraint decides: the second copy's insert waits for the first's transaction, then
    fails, and its request answers with the first one's run."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite lets one writer in at a time: two deliveries are never at once there")
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    repo = GitRepo(tmp_path / "service")
    repo.write("a.py", "x = 1\n")
    repo.commit("One")
    repository = repository_register(project=ProjectFactory(), source=str(repo.path))
    payload = github_payload(after=repo.head())
    requested = threading.Event()
    original = repos.services.ingestion_request

    def held_open(**kwargs: Any) -> Any:
        request = original(**kwargs)
        if threading.current_thread().name == "first":
            requested.set()
            time.sleep(1.5)  # the delivery row is written, not committed: the second copy comes now
        return request

    monkeypatch.setattr(repos.services, "ingestion_request", held_open)
    answers: dict[str, Any] = {}

    def send(name: str) -> None:
        try:
            if name == "second":
                assert requested.wait(30)
            answers[name] = github_push(
                payload, repository.webhook_secret, query=f"?repository={repository.pk}", delivery="same"
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(name,), name=name) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    first, second = answers["first"], answers["second"]
    assert (first.status_code, second.status_code) == (202, 200), second.content
    [run] = IngestionRun.objects.filter(repository=repository)
    assert first.json()["runs"] == [{"repository": repository.pk, "run": run.pk, "created": True}]
    assert second.json()["runs"] == [{"repository": repository.pk, "run": run.pk, "created": False}]
    assert PushDelivery.objects.get().run_id == run.pk


# --- Purge and admin ---------------------------------------------------------------------------------------


def _deliveries(repository: Repository, count: int, *, days_ago: int, start: int = 0) -> None:
    for number in range(start, start + count):
        push_delivery_receive(
            repository=repository, delivery_id=f"d-{number}", body_sha256=f"{number:064x}", ingest=False
        )
    received = timezone.now() - datetime.timedelta(days=days_ago)
    PushDelivery.objects.filter(delivery_id__in=[f"d-{n}" for n in range(start, start + count)]).update(
        received_at=received
    )


def test_old_deliveries_are_purged_in_batches_and_recent_ones_kept(repository: Repository):
    _deliveries(repository, 5, days_ago=31)
    _deliveries(repository, 2, days_ago=29, start=5)

    purged = push_deliveries_purge(older_than_days=30, batch_size=2)

    assert purged == 5
    assert sorted(PushDelivery.objects.values_list("delivery_id", flat=True)) == ["d-5", "d-6"]
    with pytest.raises(ValidationError):
        push_deliveries_purge(older_than_days=-1)


def test_the_schedule_purges_deliveries_older_than_the_setting(repository: Repository, settings):
    settings.APM_PUSH_DELIVERIES_KEEP_DAYS = 10
    _deliveries(repository, 3, days_ago=11)
    _deliveries(repository, 1, days_ago=9, start=3)

    purged = push_deliveries_purge_task.apply().get()

    assert purged == 3
    assert list(PushDelivery.objects.values_list("delivery_id", flat=True)) == ["d-3"]
    task, when, kwargs = settings.APM_SCHEDULE_DEFAULTS["Purge old push deliveries"]
    assert (task, kwargs) == (push_deliveries_purge_task.name, {})
    assert when["hour"] == "3"


def test_a_purged_delivery_sent_again_starts_a_run_again(repository: Repository):
    first = github_push(github_payload(), repository.webhook_secret, delivery="d-1")
    IngestionRun.objects.update(status=IngestionRun.Status.SUCCEEDED)
    PushDelivery.objects.update(received_at=timezone.now() - datetime.timedelta(days=31))
    push_deliveries_purge(older_than_days=30)

    again = github_push(github_payload(), repository.webhook_secret, delivery="d-1")

    assert (first.status_code, again.status_code) == (202, 202)
    assert len(runs(repository)) == 2


def test_the_admin_lists_deliveries_read_only_with_a_fixed_number_of_queries(
    admin_client, django_assert_num_queries, repository: Repository
):
    url = reverse("admin:repos_pushdelivery_changelist")
    added = iter(range(1000))

    def add_rows(count: int) -> None:
        start = next(added) * 100
        _deliveries(repository, count, days_ago=1, start=start)

    # 1 session, 2 user, (PostgreSQL, MariaDB: the table's row estimate), 3 COUNT for the paginator
    # (show_full_result_count is off), 4 the rows with their repository and run joined
    estimate = 0 if connection.vendor == "sqlite" else 1
    assert_changelist_queries_fixed(admin_client, django_assert_num_queries, url, add_rows, 4 + estimate)
    delivery = PushDelivery.objects.first()
    assert delivery is not None
    page = admin_client.get(reverse("admin:repos_pushdelivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert admin_client.get(reverse("admin:repos_pushdelivery_add")).status_code == 403
