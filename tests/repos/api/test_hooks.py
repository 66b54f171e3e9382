"""The push webhook (``POST /api/v1/hooks/push/``) as GitHub, Gitea and GitLab call it.

No login: the repository's own webhook secret is the credential (an HMAC-SHA256 signature of the exact
body, or GitLab's token). The world's repository ``alpha-repo`` is registered as
``https://git.example.com/team/alpha.git`` and follows ``main``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from repos.models import Commit, IngestionRun, Repository
from repos.services import repository_register
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


def github_push(payload: dict[str, Any], secret: str, *, event: str = "push", query: str = "") -> Any:
    body = json.dumps(payload).encode()
    return post(
        body,
        query=query,
        HTTP_X_GITHUB_EVENT=event,
        HTTP_X_HUB_SIGNATURE_256=f"sha256={signature(secret, body)}",
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


def test_the_same_push_again_returns_the_queued_run(repository: Repository):
    first = github_push(github_payload(), repository.webhook_secret)
    second = github_push(github_payload(), repository.webhook_secret)

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

    response = github_push(payload, repository.webhook_secret)

    assert response.status_code == 202, response.content[:200]
    assert len(runs(repository)) == 1


def test_a_push_larger_than_the_payload_limit_is_413(repository: Repository, monkeypatch):
    monkeypatch.setattr("repos.api.hooks.MAX_PAYLOAD_BYTES", 1024)
    payload = github_payload(padding="x" * 2000)

    response = github_push(payload, repository.webhook_secret)

    assert response.status_code == 413
    assert set(response.json()) == {"detail"}
    assert not runs(repository)


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
