"""Hotspots, change coupling and contributor statistics against git's own answers.

A real repository is built with known authors, dates and files (a rename, a merge, a mass commit of more
than 30 files, a binary file), ingested through the ingestion service, and every figure the selectors
give is compared with what ``git log --numstat`` and ``git ls-tree`` say about the same window.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from insights.code import (
    MAX_DAYS,
    AnalyticsWindow,
    change_coupling,
    code_window,
    contributor_stats,
    file_hotspots,
    window_resolve,
)
from repos.models import Commit, IngestionRun, Repository
from repos.services import ingestion_request, repository_register
from tests.factories import CommitFactory, FileChangeFactory, ProjectFactory, RepositoryFactory
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db

ADA = ("Ada Lovelace", "ada@example.com")
BOB = ("Bob", "bob@example.com")
BOB_LATER = ("Bob Builder", "bob@example.com")  # the same e-mail under a newer name
CY = ("Cy Young", "cy@example.com")

# Midnight UTC 20 days ago: every commit but the first falls in the default 90-day window.
BASE = (timezone.now() - dt.timedelta(days=20)).replace(hour=0, minute=0, second=0, microsecond=0)


def at(days: float, hours: float = 0) -> dt.datetime:
    return BASE + dt.timedelta(days=days, hours=hours)


def text(lines: int, tag: str = "") -> str:
    return "".join(f"{tag}line {n}\n" for n in range(lines))


class Repo(GitRepo):
    """A GitRepo (commits by chosen authors at chosen dates: ``commit_as``) that also answers what git
    says of its history, for the comparison."""

    # --- git's own answers, for the comparison -------------------------------------------------------

    def log(self, ref: str = "main") -> list[dict[str, Any]]:
        """Every commit with its author, commit time, parents and numstat (from ``git log -M -z``)."""
        out = self.git("log", "--format=%H%x00%ae%x00%an%x00%ct%x00%P", ref).decode().splitlines()
        numstat = self.numstat(ref)
        commits = []
        for line in out:
            sha, email, name, stamp, parents = line.split("\0")
            commits.append(
                {
                    "sha": sha,
                    "email": email,
                    "name": name,
                    "time": dt.datetime.fromtimestamp(int(stamp), dt.UTC),
                    "merge": len(parents.split()) > 1,
                    "changes": {path.decode(): lines for path, lines in numstat[sha].items()},
                }
            )
        return commits

    def lines_at_tip(self) -> dict[str, tuple[int, bool]]:
        """{path: (lines, is_binary)} of the files at the tip, read with ``git cat-file``."""
        result = {}
        for path in self.tree():
            blob = self.git("cat-file", "blob", f"main:{path.decode()}")
            binary = b"\0" in blob
            result[path.decode()] = (0 if binary else blob.count(b"\n"), binary)
        return result


def build(path: Path) -> Repo:
    """The history the tests read; comments give what each commit means for the analytics."""
    repo = Repo(path)
    repo.write("README.md", text(3))
    repo.write("legacy.txt", text(2))
    repo.commit_as("Old import (outside the default window)", ADA, at(-200))
    repo.write("src/core.py", text(10))
    repo.write("src/util.py", text(5))
    repo.write("docs/guide.md", text(10))
    repo.commit_as("Core, util and a guide", ADA, at(0, 10))
    repo.write("src/core.py", text(12))
    repo.write("src/util.py", text(5, "b"))
    repo.commit_as("Core and util", BOB, at(0, 15))
    repo.write("src/core.py", text(12, "c"))
    repo.write("src/util.py", text(6))
    repo.write("docs/guide.md", text(11))
    repo.commit_as("Core, util and guide", BOB, at(1, 9))
    repo.write("src/core.py", text(14))
    repo.write("src/util.py", text(7))
    # 23:30 UTC, but 01:30 the next day at the author's +0200: active days count UTC dates.
    repo.commit_as("Core and util, late", CY, at(1, 23.5), offset="+0200")
    repo.git("mv", "docs/guide.md", "docs/manual.md")
    repo.write("docs/manual.md", text(11) + "one more\n")
    repo.write("src/core.py", text(15))
    repo.commit_as("Rename the guide to manual, and core", ADA, at(2, 10))
    repo.write("docs/manual.md", text(11) + "two more\n")
    repo.write("src/core.py", text(16))
    repo.commit_as("Manual and core", BOB_LATER, at(3, 10))
    # A feature branch merged with a merge commit (which has no file changes of its own).
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("feature/x.py", text(4))
    repo.write("src/util.py", text(8))
    repo.commit_as("Feature", CY, at(4, 9))
    repo.git("checkout", "-q", "main")
    repo.write("README.md", text(4))
    repo.commit_as("Readme", ADA, at(4, 10))
    repo.git("merge", "-q", "--no-ff", "-m", "Merge feature", "feature", env=repo.env_as(ADA, at(5, 10)))
    # A mass commit of 37 files: left out of coupling, counted everywhere else.
    for n in range(35):
        repo.write(f"gen/f{n:02}.txt", text(1, str(n)))
    repo.write("src/core.py", text(17))
    repo.write("src/util.py", text(9))
    repo.commit_as("Generated files", BOB_LATER, at(6, 10))
    repo.write("assets/logo.bin", b"\x89PNG\0\0\x01" * 20)
    repo.commit_as("Logo", CY, at(7, 10))
    repo.write("assets/logo.bin", b"\x89PNG\0\0\x02" * 30)
    repo.write("src/util.py", text(10))
    repo.commit_as("New logo, util", CY, at(8, 10))
    return repo


def ingest(repository: Repository, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND)
    request.run.refresh_from_db()
    assert request.run.status == IngestionRun.Status.SUCCEEDED, request.run.error


@pytest.fixture
def history(root: Path, django_capture_on_commit_callbacks) -> tuple[Repo, Repository]:
    repo = build(root / "main")
    repository = repository_register(project=ProjectFactory(key="HOT"), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)
    return repo, repository


def in_window(repo: Repo, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
    return [commit for commit in repo.log() if since <= commit["time"] < until]


# --- what the figures should be, computed from git's answers ----------------------------------------


def expected_hotspots(repo: Repo, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
    tip = repo.lines_at_tip()
    changes: Counter[str] = Counter()
    churn: Counter[str] = Counter()
    authors: dict[str, set[str]] = defaultdict(set)
    last: dict[str, dt.datetime] = {}
    for commit in in_window(repo, since, until):
        for path, (added, deleted) in commit["changes"].items():
            changes[path] += 1
            churn[path] += (added or 0) + (deleted or 0)
            authors[path].add(commit["email"])
            last[path] = max(last.get(path, commit["time"]), commit["time"])
    rows = [
        {
            "path": path,
            "lines": tip[path][0],
            "changes": changes[path],
            "churn": churn[path],
            "authors": len(authors[path]),
            "last_changed_at": last[path],
            "score": changes[path] * (1 if tip[path][1] or tip[path][0] < 1 else tip[path][0]),
        }
        for path in changes
        if path in tip
    ]
    return sorted(rows, key=lambda row: (-row["score"], -row["churn"], row["path"]))


def expected_contributors(repo: Repo, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
    by_author: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for commit in in_window(repo, since, until):
        by_author[commit["email"]].append(commit)
    # Merges are counted apart from the other commits (git shortlog --no-merges counts the others).
    rows = []
    for email, commits in by_author.items():
        areas: Counter[str] = Counter()
        for commit in commits:
            for path, (added, deleted) in commit["changes"].items():
                area = path.split("/", 1)[0] + "/" if "/" in path else "(root)"
                areas[area] += (added or 0) + (deleted or 0)
        latest = max(commits, key=lambda commit: commit["time"])
        rows.append(
            {
                "author_email": email,
                "author_name": latest["name"],
                "commits": sum(1 for commit in commits if not commit["merge"]),
                "merges": sum(1 for commit in commits if commit["merge"]),
                "lines_added": sum(a or 0 for c in commits for a, _ in c["changes"].values()),
                "lines_deleted": sum(d or 0 for c in commits for _, d in c["changes"].values()),
                "active_days": len({commit["time"].date() for commit in commits}),
                "first_commit_at": min(commit["time"] for commit in commits),
                "last_commit_at": latest["time"],
                "main_areas": [
                    {"area": area, "lines": lines}
                    for area, lines in sorted(areas.items(), key=lambda item: (-item[1], item[0]))[:3]
                ],
            }
        )
    return sorted(rows, key=lambda row: (-row["commits"], -row["merges"], row["author_email"]))


def expected_pairs(
    repo: Repo, since: dt.datetime, until: dt.datetime, *, min_shared: int, max_files: int = 30
) -> list[tuple[str, str, int, int, int]]:
    tip = repo.lines_at_tip()
    counts: Counter[str] = Counter()
    shared: Counter[tuple[str, str]] = Counter()
    for commit in in_window(repo, since, until):
        if commit["merge"] or len(commit["changes"]) > max_files:
            continue
        paths = sorted(commit["changes"])
        counts.update(paths)
        shared.update((a, b) for i, a in enumerate(paths) for b in paths[i + 1 :])
    rows = [
        (a, b, n, counts[a], counts[b])
        for (a, b), n in shared.items()
        if n >= min_shared and a in tip and b in tip
    ]
    return sorted(rows, key=lambda row: (-row[2] / min(row[3], row[4]), -row[2], row[0], row[1]))


# --- hotspots ----------------------------------------------------------------------------------------


def test_hotspots_match_git_in_the_default_window(history):
    repo, repository = history

    rows = file_hotspots(project=repository.project)

    expected = expected_hotspots(repo, timezone.now() - dt.timedelta(days=90), timezone.now())
    assert [{key: row[key] for key in expected[0]} for row in rows] == expected
    assert {row["repository"] for row in rows} == {repository.pk}
    top = rows[0]
    # src/core.py: 7 changes in the window (the mass commit included) x 17 lines at the tip.
    assert (top["path"], top["changes"], top["lines"], top["score"], top["authors"]) == (
        "src/core.py",
        7,
        17,
        7 * 17,
        3,
    )
    paths = {row["path"] for row in rows}
    # legacy.txt changed only before the window; docs/guide.md is no longer in the tree.
    assert "legacy.txt" not in paths
    assert "docs/guide.md" not in paths
    logo = next(row for row in rows if row["path"] == "assets/logo.bin")
    assert (logo["lines"], logo["score"], logo["churn"]) == (0, 2, 0)  # binary: size counts as 1


def test_a_renamed_file_counts_its_changes_under_its_current_path_only(history):
    _repo, repository = history

    manual = next(row for row in file_hotspots(project=repository.project) if row["path"] == "docs/manual.md")

    # Added to the tree as docs/guide.md (2 changes), renamed, then changed once more.
    assert manual["changes"] == 2


def test_hotspots_of_a_window_and_a_limit(history):
    repo, repository = history
    since, until = at(2), at(5)

    rows = file_hotspots(project=repository.project, since=since, until=until, limit=2)

    assert [(row["path"], row["changes"]) for row in rows] == [
        (row["path"], row["changes"]) for row in expected_hotspots(repo, since, until)[:2]
    ]
    assert rows[0]["path"] == "src/core.py"
    assert rows[0]["changes"] == 2


# --- change coupling ---------------------------------------------------------------------------------


def test_coupling_pairs_are_the_expected_ones(history):
    repo, repository = history
    since, until = at(-1), at(30)

    three = change_coupling(project=repository.project, since=since, until=until)
    two = change_coupling(project=repository.project, since=since, until=until, min_shared=2)

    as_tuples = [(r["path_a"], r["path_b"], r["shared"], r["changes_a"], r["changes_b"]) for r in three]
    # core and util change together in 4 of their 6 eligible commits each (the mass commit is out).
    assert as_tuples == [("src/core.py", "src/util.py", 4, 6, 6)]
    assert three[0]["degree"] == round(4 / 6, 4)
    assert as_tuples == expected_pairs(repo, since, until, min_shared=3)
    # At 2, the manual joins: both of its changes (under its current path) came with core.
    assert [(r["path_a"], r["path_b"], r["shared"], r["degree"]) for r in two] == [
        ("docs/manual.md", "src/core.py", 2, 1.0),
        ("src/core.py", "src/util.py", 4, round(4 / 6, 4)),
    ]
    assert [(r["path_a"], r["path_b"], r["shared"], r["changes_a"], r["changes_b"]) for r in two] == (
        expected_pairs(repo, since, until, min_shared=2)
    )
    assert {three[0]["file_a"], three[0]["file_b"]} == set(
        repository.files.filter(path__in=["src/core.py", "src/util.py"]).values_list("id", flat=True)
    )


def test_coupling_counts_the_mass_commit_when_the_limit_allows_it(history, settings):
    repo, repository = history
    settings.APM_COUPLING_MAX_FILES = 40

    rows = change_coupling(project=repository.project, since=at(-1), until=at(30), min_shared=5)

    pairs = {(r["path_a"], r["path_b"]): (r["shared"], r["changes_a"], r["changes_b"]) for r in rows}
    assert pairs[("src/core.py", "src/util.py")] == (5, 7, 7)
    assert list(pairs) == [
        (a, b) for a, b, *_ in expected_pairs(repo, at(-1), at(30), min_shared=5, max_files=40)
    ]


def test_coupling_in_a_window(history):
    repo, repository = history

    rows = change_coupling(project=repository.project, since=at(1), until=at(30), min_shared=2)

    # From day 1 on, core and util share 2 commits; the manual's two changes still came with core.
    assert [(r["path_a"], r["path_b"], r["shared"]) for r in rows] == [
        (a, b, n) for a, b, n, *_ in expected_pairs(repo, at(1), at(30), min_shared=2)
    ]
    assert ("src/core.py", "src/util.py", 2) in [(r["path_a"], r["path_b"], r["shared"]) for r in rows]


# --- contributors ------------------------------------------------------------------------------------


def test_contributors_match_git(history):
    repo, repository = history

    rows = contributor_stats(project=repository.project)

    assert rows == expected_contributors(repo, timezone.now() - dt.timedelta(days=90), timezone.now())
    ada = next(row for row in rows if row["author_email"] == ADA[1])
    bob = next(row for row in rows if row["author_email"] == BOB[1])
    cy = next(row for row in rows if row["author_email"] == CY[1])
    # Ada's merge is counted apart from her 3 commits, and brings no lines.
    assert (ada["commits"], ada["merges"]) == (3, 1)
    assert bob["author_name"] == "Bob Builder"  # the name of the latest commit
    # Cy committed on day 1 at 23:30 UTC (day 2 at their +0200), then days 4, 7 and 8.
    assert cy["active_days"] == 4
    # The mass commit's 35 one-line files: gen/ is one of Bob's areas (after src/, which he rewrote).
    assert [area["area"] for area in bob["main_areas"]] == ["src/", "gen/", "docs/"]
    assert bob["main_areas"][1] == {"area": "gen/", "lines": 35}


def test_contributors_of_a_window_with_a_limit(history):
    repo, repository = history
    since, until = at(1), at(4)

    rows = contributor_stats(project=repository.project, since=since, until=until, limit=1)

    assert rows == expected_contributors(repo, since, until)[:1]
    assert rows[0]["author_email"] == BOB[1]


def test_nothing_in_an_empty_window(history):
    _repo, repository = history
    since, until = at(100), at(101)

    assert file_hotspots(project=repository.project, since=since, until=until) == []
    assert change_coupling(project=repository.project, since=since, until=until) == []
    assert contributor_stats(project=repository.project, since=since, until=until) == []


# --- repository filter and query counts -------------------------------------------------------------


def test_the_repository_filter(history, root, django_capture_on_commit_callbacks):
    _repo, repository = history
    second = Repo(root / "second")
    for n in range(3):
        second.write("lib/a.py", text(n + 1))
        second.write("lib/b.py", text(n + 2))
        second.commit_as(f"Second {n}", ("Dee", "dee@example.com"), at(3, n))
    other = repository_register(project=repository.project, source=str(second.path))
    ingest(other, django_capture_on_commit_callbacks)
    stranger = repository_register(project=ProjectFactory(), source=str(second.path))
    ingest(stranger, django_capture_on_commit_callbacks)
    project = repository.project

    both = file_hotspots(project=project)
    only = file_hotspots(project=project, repository=other)
    coupled = change_coupling(project=project, repository=other.pk)
    people = contributor_stats(project=project, repository=other)

    assert {row["repository"] for row in both} == {repository.pk, other.pk}
    assert {row["path"] for row in only} == {"lib/a.py", "lib/b.py"}
    assert {row["repository"] for row in only} == {other.pk}
    assert [(r["path_a"], r["path_b"], r["shared"], r["degree"]) for r in coupled] == [
        ("lib/a.py", "lib/b.py", 3, 1.0)
    ]
    assert [(row["author_email"], row["commits"]) for row in people] == [("dee@example.com", 3)]
    # Another project's repository selects nothing, even though its history is the same.
    assert file_hotspots(project=project, repository=stranger) == []
    assert change_coupling(project=project, repository=stranger) == []
    assert contributor_stats(project=project, repository=stranger.pk) == []


def queries(call: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured.captured_queries)


def test_queries_do_not_grow_with_the_history(history, django_capture_on_commit_callbacks):
    repo, repository = history
    project = repository.project

    def counts(**window: Any) -> tuple[int, int, int]:
        return (
            queries(lambda: file_hotspots(project=project, **window)),
            queries(lambda: change_coupling(project=project, min_shared=1, **window)),
            queries(lambda: contributor_stats(project=project, **window)),
        )

    explicit = {"since": at(-1), "until": at(60)}
    small, small_explicit = counts(), counts(**explicit)
    for n in range(30):
        repo.write(f"more/m{n % 7}.py", text(n + 1))
        repo.write("src/core.py", text(20 + n))
        repo.commit_as(f"More {n}", (f"Dev {n}", f"dev{n % 5}@example.com"), at(9 + n / 10))
    ingest(repository, django_capture_on_commit_callbacks)
    assert Commit.objects.filter(repository=repository).count() > 40

    # hotspots: one query; coupling: one query; contributors: aggregates per author, names per
    # author, lines per author and directory (ranked in the database); when the window is left to the
    # selector, one more for the last commit (where the window ends)
    assert small_explicit == counts(**explicit) == (1, 1, 3)
    assert small == counts() == (2, 2, 4)


# --- admin ---------------------------------------------------------------------------------------------


def test_the_repository_page_shows_its_hotspots_computed_once(history, admin_client):
    repo, repository = history
    url = reverse("admin:repos_repository_change", args=[repository.pk])

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(url)

    assert response.status_code == 200
    page = response.content.decode()
    expected = expected_hotspots(repo, timezone.now() - dt.timedelta(days=90), timezone.now())[:10]
    assert "Hotspots" in page
    positions = [page.index(f">{row['path']}</a>") for row in expected]
    assert positions == sorted(positions)  # in ranking order
    assert f"<td>{7 * 17}</td>" in page  # src/core.py's score
    hotspot_queries = [
        q for q in captured.captured_queries if "GROUP BY c.repository_id, fc.path" in q["sql"]
    ]
    assert len(hotspot_queries) == 1


def test_the_file_admin_sorts_by_churn_and_commit_count_only(history, admin_client):
    _repo, repository = history
    url = reverse("admin:repos_file_changelist")
    columns = list(admin_client.get(url).context["cl"].list_display)

    by_churn = admin_client.get(url, {"o": f"-{columns.index('churn')}"})
    by_count = admin_client.get(url, {"o": f"{columns.index('commit_count')}"})

    churns = [file.churn for file in by_churn.context["cl"].result_list]
    counts = [file.commit_count for file in by_count.context["cl"].result_list]
    assert churns == sorted(churns, reverse=True)
    assert len(churns) == repository.files.count()
    assert counts == sorted(counts)
    assert set(by_churn.context["cl"].sortable_by) == {"churn", "commit_count"}


def test_an_author_is_one_person_whatever_the_case_of_the_email(db):
    repository = RepositoryFactory()
    for email, name in (("Ada@Example.com", "Ada"), ("ada@example.com", "Ada Lovelace")):
        FileChangeFactory(
            commit=CommitFactory(repository=repository, author_email=email, author_name=name), path="src/a.py"
        )

    rows = contributor_stats(project=repository.project)

    assert [(row["commits"], row["main_areas"][0]["area"]) for row in rows] == [(2, "src/")]
    # Shown as the author last wrote them (both commits are at the same instant here).
    assert (rows[0]["author_email"], rows[0]["author_name"]) in {
        ("Ada@Example.com", "Ada"),
        ("ada@example.com", "Ada Lovelace"),
    }


def test_the_repository_page_shows_coupling_and_contributors(history, admin_client):
    _repo, repository = history
    pairs = change_coupling(project=repository.project, repository=repository, limit=10)
    authors = contributor_stats(project=repository.project, repository=repository, limit=10)

    page = admin_client.get(reverse("admin:repos_repository_change", args=[repository.pk])).content.decode()

    assert pairs
    assert authors
    assert f"<td>{pairs[0]['path_a']}</td><td>{pairs[0]['path_b']}</td><td>{pairs[0]['shared']}</td>" in page
    first = authors[0]
    assert (
        f"<td>{first['author_name']} &lt;{first['author_email']}&gt;</td><td>{first['commits']}</td>" in page
    )


# --- merges counted apart, against git shortlog ---------------------------------------------------------


def shortlog(repo: Repo) -> dict[str, int]:
    """{e-mail: commits} from ``git shortlog -sne --no-merges HEAD``, e-mails lower-cased."""
    counts: Counter[str] = Counter()
    for line in repo.git("shortlog", "-sne", "--no-merges", "HEAD").decode().splitlines():
        number, _, who = line.strip().partition("\t")
        counts[who[who.rindex("<") + 1 : -1].lower()] += int(number)
    return dict(counts)


def test_contributors_count_merges_apart_as_git_shortlog_does(root, django_capture_on_commit_callbacks):
    repo = Repo(root / "merged")
    repo.write("README.md", text(1))
    repo.commit_as("Start", ADA, at(0))
    # Pull requests of Bob and Cy, merged by Ada (GitHub's "Merge pull request #n"), and one by Dee that
    # Bob merges; Ada also merges main into a branch once.
    for n, (author, merger) in enumerate(
        [(BOB, ADA), (CY, ADA), (BOB, ADA), (("Dee", "dee@example.com"), BOB)]
    ):
        repo.git("checkout", "-q", "-b", f"pr{n}")
        for step in range(n + 1):
            repo.write(f"src/m{n}.py", text(step + 2))
            repo.commit_as(f"Part {step} of change {n}", author, at(1 + n, step))
        repo.git("checkout", "-q", "main")
        repo.write("README.md", text(n + 2))
        repo.commit_as(f"Readme {n}", ADA, at(1 + n, 5))
        repo.git(
            "merge", "-q", "--no-ff", "-m", f"Merge pull request #{n + 10} from x/pr{n}", f"pr{n}",
            env=repo.env_as(merger, at(1 + n, 6)),
        )  # fmt: skip
    repository = repository_register(project=ProjectFactory(key="MRG"), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)
    merges = Counter(repo.git("log", "--merges", "--format=%ae", "HEAD").decode().lower().split())

    rows = contributor_stats(project=repository.project, since=at(-1), until=at(30))

    assert {row["author_email"]: row["commits"] for row in rows} == shortlog(repo)
    assert {row["author_email"]: row["merges"] for row in rows if row["merges"]} == dict(merges)
    assert sum(row["merges"] for row in rows) == 4
    # Most commits first, merges apart: Ada wrote 5 (Start and four readmes) and merged 3.
    assert [(row["author_email"], row["commits"], row["merges"]) for row in rows] == [
        ("ada@example.com", 5, 3),
        ("bob@example.com", 4, 1),
        ("dee@example.com", 4, 0),
        ("cy@example.com", 2, 0),
    ]
    assert rows == expected_contributors(repo, at(-1), at(30))


# --- the window: quiet repositories, days ----------------------------------------------------------------


def test_a_quiet_repository_shows_its_last_90_days_of_work(
    root, django_capture_on_commit_callbacks, admin_client
):
    repo = build(root / "quiet")
    repository = repository_register(project=ProjectFactory(key="OLD"), source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)
    # The whole history moves 240 days back: the last commit was eight months ago.
    shift = dt.timedelta(days=240)
    Commit.objects.filter(repository=repository).update(timestamp=F("timestamp") - shift)
    last = Commit.objects.filter(repository=repository).latest("timestamp").timestamp
    project = repository.project

    window = code_window(project=project, repository=repository)
    rows = file_hotspots(project=project)

    assert window.anchored_to_last_activity is True
    assert window.last_day == last.astimezone(dt.UTC).date()
    assert window.days == 90
    assert window.last_activity_at == last
    # The figures are those of the 90 days up to the last commit, as git counts them (shifted).
    expected = expected_hotspots(repo, window.since + shift, window.until + shift)
    assert [(row["path"], row["changes"], row["score"]) for row in rows] == [
        (row["path"], row["changes"], row["score"]) for row in expected
    ]
    assert rows
    assert change_coupling(project=project)
    assert contributor_stats(project=project)
    page = admin_client.get(reverse("admin:repos_repository_change", args=[repository.pk])).content.decode()
    assert page.count("up to the last commit") == 3  # each panel says which window it shows
    assert f"from {window.first_day} to {window.last_day}" in page
    assert "No commits in this window." not in page


def test_an_active_repository_ends_its_window_today(history):
    _repo, repository = history
    Commit.objects.filter(pk=Commit.objects.filter(repository=repository).latest("timestamp").pk).update(
        timestamp=timezone.now()
    )

    window = code_window(project=repository.project)

    assert (window.last_day, window.days, window.anchored_to_last_activity) == (
        timezone.now().astimezone(dt.UTC).date(),
        90,
        False,
    )


TODAY = dt.date(2026, 6, 30)
LAST = dt.datetime(2025, 10, 14, 18, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("given", "first", "last", "anchored"),
    [
        ({}, dt.date(2025, 7, 17), dt.date(2025, 10, 14), True),
        ({"days": 7}, dt.date(2025, 10, 8), dt.date(2025, 10, 14), True),
        ({"last_activity_at": None}, dt.date(2026, 4, 2), TODAY, False),
        ({"last_activity_at": dt.datetime(2026, 6, 30, 1, tzinfo=dt.UTC)}, dt.date(2026, 4, 2), TODAY, False),
        ({"since": dt.date(2025, 1, 1)}, dt.date(2025, 1, 1), TODAY, False),
        ({"since": dt.date(2025, 1, 1), "days": 31}, dt.date(2025, 1, 1), dt.date(2025, 1, 31), False),
        ({"until": dt.date(2025, 1, 31), "days": 31}, dt.date(2025, 1, 1), dt.date(2025, 1, 31), False),
        ({"until": dt.date(2025, 3, 31)}, dt.date(2025, 1, 1), dt.date(2025, 3, 31), False),
        (
            {"since": dt.date(2025, 1, 1), "until": dt.date(2025, 1, 1)},
            dt.date(2025, 1, 1),
            dt.date(2025, 1, 1),
            False,
        ),
        ({"days": MAX_DAYS}, dt.date(2015, 10, 18), dt.date(2025, 10, 14), True),
    ],
)
def test_the_window_asked_for(given, first, last, anchored):
    window = window_resolve(**{"last_activity_at": LAST, "today": TODAY, **given})

    assert (window.first_day, window.last_day, window.anchored_to_last_activity) == (first, last, anchored)
    assert window.since == dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC)
    assert window.until == dt.datetime.combine(last + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"days": 0}, "days"),
        ({"days": MAX_DAYS + 1}, "days"),
        ({"since": dt.date(2025, 1, 1), "until": dt.date(2025, 1, 31), "days": 31}, "days"),
        ({"since": dt.date(2025, 2, 1), "until": dt.date(2025, 1, 31)}, "since"),
        ({"since": dt.date(2026, 7, 1)}, "since"),
    ],
)
def test_a_window_that_cannot_be_is_a_field_error(given, field):
    with pytest.raises(ValidationError) as excinfo:
        window_resolve(today=TODAY, **given)

    assert list(excinfo.value.message_dict) == [field]


def test_the_window_in_words():
    anchored = AnalyticsWindow(
        first_day=dt.date(2025, 7, 17), last_day=dt.date(2025, 10, 14), anchored_to_last_activity=True,
        last_activity_at=LAST,
    )  # fmt: skip

    assert anchored.describe() == (
        "the 90 days from 2025-07-17 to 2025-10-14 (UTC), up to the last commit (2025-10-14 18:30 UTC): "
        "nothing was committed since"
    )
    assert AnalyticsWindow(first_day=TODAY, last_day=TODAY).describe() == "2026-06-30 (UTC)"
    assert anchored.as_dict() == {
        "since": dt.date(2025, 7, 17),
        "until": dt.date(2025, 10, 14),
        "days": 90,
        "anchored_to_last_activity": True,
        "last_activity_at": LAST,
    }
