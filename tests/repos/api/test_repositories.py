"""Repositories, ingestion, commits, file changes and files through the API, on real git repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from repos.models import CommitTaskLink, IngestionRun, Repository
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db


@pytest.fixture
def repo(tmp_path: Path, settings) -> GitRepo:
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    settings.APM_INGEST_CHUNK_COMMITS = 2
    repo = GitRepo(tmp_path / "service")
    repo.write("src/app.py", "print('hello')\n" * 3)
    repo.commit("Add the app")
    repo.write("docs/guide.md", "# Guide\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "Write the guide", "--author=Grace Hopper <grace@example.com>")
    for number in range(3):
        repo.write("src/app.py", "print('hello')\n" * (4 + number))
        repo.commit(f"Grow the app {number}")
    return repo


@pytest.fixture
def ingested(world, repo, django_capture_on_commit_callbacks) -> Repository:
    client = world.client("staff")
    created = client.post(
        "/api/v1/repositories/", {"project": "ALPHA", "source": str(repo.path)}, format="json"
    )
    assert created.status_code == 201, created.json()
    with django_capture_on_commit_callbacks(execute=True):
        accepted = client.post(f"/api/v1/repositories/{created.json()['id']}/ingest/", {}, format="json")
    assert accepted.status_code == 202
    return Repository.objects.get(pk=created.json()["id"])


def test_registering_shows_the_webhook_secret_once(world, repo):
    client = world.client("staff")

    created = client.post(
        "/api/v1/repositories/", {"project": "ALPHA", "source": str(repo.path), "name": "svc"}, format="json"
    )
    shown = client.get(f"/api/v1/repositories/{created.json()['id']}/")

    assert created.status_code == 201
    data = created.json()
    assert (data["name"], data["kind"], data["project"], data["last_run"]) == ("svc", "local", "ALPHA", None)
    assert data["webhook_secret"] == Repository.objects.get(pk=data["id"]).webhook_secret
    assert len(data["webhook_secret"]) == 64
    assert "webhook_secret" not in shown.json()


@pytest.mark.parametrize(
    "source",
    [
        "--upload-pack=touch /tmp/pwned",
        "/etc",
        "file:///etc",
        "ext::sh -c touch% /tmp/pwned",
        "http://x/y.git",
    ],
)
def test_unsafe_sources_are_refused_before_anything_is_written(world, source):
    response = world.client("owner").post("/api/v1/repositories/", {"project": "ALPHA", "source": source})

    assert response.status_code == 400
    assert response.json()["errors"]["source"]
    assert Repository.objects.count() == 2


def test_repository_fields_are_checked_on_update(world):
    client = world.client("owner")
    url = f"/api/v1/repositories/{world.objects['repository'].pk}/"

    bad_branch = client.patch(url, {"default_branch": "--upload-pack=x"}, format="json")
    source = client.patch(url, {"source": "https://git.example.com/other.git"}, format="json")
    fine = client.patch(url, {"default_branch": "develop", "is_active": False}, format="json")

    assert bad_branch.status_code == 400
    assert "default_branch" in bad_branch.json()["errors"]
    assert source.status_code == 400
    assert "register the new source" in source.json()["errors"]["source"][0]
    assert (fine.status_code, fine.json()["default_branch"], fine.json()["is_active"]) == (
        200,
        "develop",
        False,
    )


def test_ingest_answers_202_with_the_run_and_ingests(world, ingested, repo):
    run = IngestionRun.objects.get(repository=ingested)
    client = world.client("viewer")

    detail = client.get(f"/api/v1/ingestion-runs/{run.pk}/").json()
    listed = client.get("/api/v1/ingestion-runs/", {"repository": ingested.pk, "status": "succeeded"}).json()
    repository = client.get(f"/api/v1/repositories/{ingested.pk}/").json()

    assert (detail["status"], detail["trigger"], detail["progress"]) == ("succeeded", "api", 1.0)
    assert detail["commits_total"] == detail["commits_done"] == 5
    assert [row["id"] for row in listed["results"]] == [run.pk]
    assert repository["last_run"]["id"] == run.pk
    assert repository["last_ingested_sha"] == repo.head()


def test_ingest_while_a_run_is_under_way_returns_that_run(world):
    client = world.client("member")
    url = f"/api/v1/repositories/{world.objects['repository'].pk}/ingest/"

    first = client.post(url, {}, format="json")
    second = client.post(url, {"branch": "main"}, format="json")
    bad = client.post(url, {"branch": "--upload-pack=x"}, format="json")

    assert (first.status_code, first.json()["created"], first.json()["status"]) == (202, True, "queued")
    assert first["Location"].endswith(f"/api/v1/ingestion-runs/{first.json()['run']}/")
    assert (second.status_code, second.json()["created"], second.json()["run"]) == (
        202,
        False,
        first.json()["run"],
    )
    assert bad.status_code == 400
    assert "branch" in bad.json()["errors"]


def test_commits_page_by_cursor_in_git_order(world, ingested, repo):
    client = world.client("viewer")
    expected = repo.git("rev-list", "HEAD").decode().split()
    seen: list[str] = []
    url = f"/api/v1/commits/?repository={ingested.pk}&page_size=2"

    while url:
        body = client.get(url).json()
        assert "count" not in body  # no COUNT(*) over the table
        seen += [row["sha"] for row in body["results"]]
        url = body["next"]

    assert seen == expected
    oldest = client.get("/api/v1/commits/", {"repository": ingested.pk, "ordering": "timestamp"}).json()
    assert oldest["results"][0]["sha"] == expected[-1]


def test_commit_filters(world, ingested, repo):
    client = world.client("viewer")
    head = repo.head()
    commits = ingested.commits.order_by("timestamp")
    CommitTaskLink.objects.create(commit=commits[0], task=world.objects["task"])

    def shas(**params):
        response = client.get("/api/v1/commits/", {"repository": ingested.pk, **params})
        assert response.status_code == 200, response.json()
        return [row["sha"] for row in response.json()["results"]]

    assert shas(author="grace@example.com") == [commits[1].sha]
    assert shas(sha=head[:8]) == [head]
    assert shas(task="alpha-1") == [commits[0].sha]
    assert shas(since=commits[3].timestamp.isoformat()) == [commits[4].sha, commits[3].sha]
    assert shas(until=commits[1].timestamp.isoformat()) == [commits[0].sha]
    assert shas(project="BETA") == []
    assert client.get(f"/api/v1/commits/{commits[0].pk}/").json()["tasks"] == ["ALPHA-1"]
    assert client.get("/api/v1/commits/", {"since": "last tuesday"}).status_code == 400


def test_file_changes_and_files(world, ingested):
    client = world.client("viewer")
    commit = ingested.commits.order_by("timestamp").first()

    changes = client.get("/api/v1/file-changes/", {"commit": commit.pk}).json()["results"]
    under_src = client.get("/api/v1/file-changes/", {"repository": ingested.pk, "path_prefix": "src/"}).json()
    files = client.get("/api/v1/files/", {"repository": ingested.pk}).json()["results"]
    markdown = client.get("/api/v1/files/", {"project": "ALPHA", "language": "Markdown"}).json()["results"]
    by_path = client.get("/api/v1/files/", {"repository": ingested.pk, "ordering": "path"}).json()["results"]

    assert [(c["path"], c["change_type"], c["added"], c["sha"]) for c in changes] == [
        ("src/app.py", "A", 3, commit.sha)
    ]
    assert {c["path"] for c in under_src["results"]} == {"src/app.py"}
    assert len(under_src["results"]) == 4
    assert [f["path"] for f in files] == ["src/app.py", "docs/guide.md"]  # most churned first
    assert files[0]["churn"] > files[1]["churn"]
    assert [f["path"] for f in markdown] == ["docs/guide.md"]
    assert [f["path"] for f in by_path] == ["docs/guide.md", "src/app.py"]


def test_only_staff_register_local_paths_and_the_answer_reveals_nothing(world, repo):
    owner = world.client("owner")

    existing = owner.post("/api/v1/repositories/", {"project": "ALPHA", "source": str(repo.path)})
    missing = owner.post("/api/v1/repositories/", {"project": "ALPHA", "source": "/no/such/dir"})

    assert existing.status_code == missing.status_code == 400
    assert existing.json() == missing.json()
    assert "operators" in existing.json()["errors"]["source"][0]
    assert Repository.objects.count() == 2


@pytest.mark.parametrize("spelling", ["{path}", "{path}/", "{path}/."])
def test_a_source_is_registered_once_and_its_secret_never_shown_again(world, repo, spelling):
    staff = world.client("staff")
    first = staff.post("/api/v1/repositories/", {"project": "ALPHA", "source": str(repo.path)})

    again = staff.post(
        "/api/v1/repositories/", {"project": "ALPHA", "source": spelling.format(path=repo.path)}
    )

    assert first.status_code == 201
    assert again.status_code == 400
    assert "already has this source" in again.json()["errors"]["source"][0]
    assert first.json()["webhook_secret"] not in again.content.decode()


@pytest.mark.parametrize(
    "source", ["https://[::1/a", "https://host:99999999/x.git", "https://host:port/x.git"]
)
def test_malformed_urls_are_a_field_error(world, source):
    response = world.client("owner").post("/api/v1/repositories/", {"project": "ALPHA", "source": source})

    assert response.status_code == 400
    assert response.json()["errors"]["source"]


def test_a_repository_can_be_registered_inactive(world):
    response = world.client("owner").post(
        "/api/v1/repositories/",
        {"project": "ALPHA", "source": "https://git.example.com/team/later.git", "is_active": False},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["is_active"] is False


def test_a_run_that_failed_before_its_plan_has_a_null_files_scope(world):
    repository = world.objects["repository"]
    run = IngestionRun.objects.create(repository=repository, trigger="api", status="failed", error="refused")

    answer = world.client("owner").get(f"/api/v1/ingestion-runs/{run.pk}/").json()

    assert (answer["status"], answer["files_scope"]) == ("failed", None)
