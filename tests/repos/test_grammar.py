"""The commit grammar on its own: what a message says about which task."""

from __future__ import annotations

import pytest

from projects.workflow import keywords_problems
from repos.grammar import CommitGrammar, duration_minutes, grammar_build
from tasks.models import Task


def grammar(**options):
    settings = {
        "project_key": "APM",
        "close_keywords": "close closes closed fix fixes fixed resolve resolves resolved",
        "extra_status_tags": {"review": "in_review", "wip": "in_progress"},
        "statuses": Task.Status.values,
        "short_references": True,
        "time_logging": True,
    }
    return grammar_build(**{**settings, **options})


def said(message: str, **options) -> dict[str, tuple]:
    parsed = grammar(**options).parse(message)
    return {m.task_key: (m.action, m.target_status, m.minutes) for m in parsed.mentions}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("APM-12", {"APM-12": ("reference", "", 0)}),
        ("refs apm-12", {"APM-12": ("reference", "", 0)}),
        ("Update parser (APM-3): faster", {"APM-3": ("reference", "", 0)}),
        ("Fixes APM-12", {"APM-12": ("fix", "done", 0)}),
        ("CLOSES apm-12", {"APM-12": ("close", "done", 0)}),
        ("resolves: APM-1", {"APM-1": ("close", "done", 0)}),
        (
            "fixes APM-1, APM-2 and #3; refs APM-4",
            {
                "APM-1": ("fix", "done", 0),
                "APM-2": ("fix", "done", 0),
                "APM-3": ("fix", "done", 0),
                "APM-4": ("reference", "", 0),
            },
        ),
        ("APM-12 @2h30m", {"APM-12": ("time", "", 150)}),
        ("APM-12 @1.5h and APM-13 @1d", {"APM-12": ("time", "", 90), "APM-13": ("time", "", 480)}),
        ("APM-12 #in_review", {"APM-12": ("transition", "in_review", 0)}),
        ("APM-12 #In-Review @45m", {"APM-12": ("transition", "in_review", 45)}),
        ("APM-12 #review", {"APM-12": ("transition", "in_review", 0)}),
        ("#7 #wip", {"APM-7": ("transition", "in_progress", 0)}),
        # Several references to one task become one mention with the strongest request.
        ("APM-5 #in_progress ... fixes APM-5", {"APM-5": ("fix", "done", 0)}),
        # Not references: part of a word, of a path, another project's key is kept for the caller to drop.
        ("see docs/APM-1.md and xAPM-2", {"XAPM-2": ("reference", "", 0)}),
        ("unfixes APM-7", {"APM-7": ("reference", "", 0)}),
        ("prefix-APM-5", {}),
        # Versions and e-mail addresses that look like keys (git.git's history is full of them).
        ("Merge branch 'apm-2.27-round-1' and apm-1.8.5.2", {}),
        ("Signed-off-by: someone+apm-2014@example.com", {}),
        (
            "Done. Fixes APM-4. Then APM-5, APM-6.",
            {"APM-4": ("fix", "done", 0), "APM-5": ("reference", "", 0), "APM-6": ("reference", "", 0)},
        ),
        ("APM-12@2h", {"APM-12": ("time", "", 120)}),
        ("fixes APM-1,APM-2", {"APM-1": ("fix", "done", 0), "APM-2": ("fix", "done", 0)}),
    ],
)
def test_messages(message: str, expected: dict) -> None:
    assert said(message) == expected


def test_short_references_can_be_turned_off() -> None:
    assert said("fixes #12 and APM-3", short_references=False) == {"APM-3": ("reference", "", 0)}


def test_time_logging_can_be_turned_off() -> None:
    assert said("APM-12 @2h", time_logging=False) == {"APM-12": ("reference", "", 0)}


def test_unknown_tags_and_bad_durations_are_problems_not_errors() -> None:
    parsed = grammar().parse("APM-3 #wontfix @200h APM-4 @2h3h")
    assert parsed.problems == [
        "APM-3: #wontfix is not a status or a transition tag of APM.",
        "APM-3: @200h is not a time spent this grammar accepts.",
        "APM-4: @2h3h is not a time spent this grammar accepts.",
    ]
    assert {m.task_key: m.action for m in parsed.mentions} == {"APM-3": "reference", "APM-4": "reference"}


def test_custom_close_keywords() -> None:
    assert said("done APM-2, fixes APM-3", close_keywords="done") == {
        "APM-2": ("close", "done", 0),
        "APM-3": ("reference", "", 0),
    }


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("2h30m", 150),
        ("45m", 45),
        ("1.5h", 90),
        ("1d", 480),
        ("1w", 2400),
        ("0m", None),
        ("2h3h", None),
        ("h", None),
    ],
)
def test_durations(text: str, minutes: int | None) -> None:
    assert duration_minutes(text) == minutes


def test_keyword_lists_are_checked() -> None:
    assert keywords_problems("fixes, closes done") == []
    assert keywords_problems("fixes APM-1 c++") == [
        "'apm-1' is not a keyword: use letters (and hyphens) only.",
        "'c++' is not a keyword: use letters (and hyphens) only.",
    ]


def test_long_runs_of_spaces_take_linear_time() -> None:
    # Ambiguous separators made these quadratic (90,000 spaces: minutes); now they parse at once.
    spaces = " " * 90_000
    assert said(f"fixes APM-1{spaces}x") == {"APM-1": ("fix", "done", 0)}
    assert said(f"fixes{spaces}x APM-2") == {"APM-2": ("reference", "", 0)}
    assert said(f"fixes APM-1,{spaces},x") == {"APM-1": ("fix", "done", 0)}


def test_only_the_start_of_a_huge_message_is_read() -> None:
    assert said("x" * 100_000 + " fixes APM-1") == {}
    assert said("fixes APM-1 " + "x" * 200_000) == {"APM-1": ("fix", "done", 0)}


def test_short_references_are_off_unless_the_project_asks() -> None:
    bare = CommitGrammar(project_key="APM", close_keywords=("fixes",), status_tags={})

    assert [m.task_key for m in bare.parse("Merge pull request #5962 from pallets/docs").mentions] == []
    assert [m.task_key for m in bare.parse("fixes #12 and APM-3").mentions] == ["APM-3"]


@pytest.mark.parametrize(
    "message",
    [
        "Merge pull request #5962 from pallets/docs",
        "Merged in feature/x (pull request #12)",
        "Revert PR #12, it broke the build",
    ],
)
def test_a_pull_request_number_is_never_a_task_even_with_short_references(message: str) -> None:
    assert said(message) == {}


def test_short_references_still_read_beside_a_pull_request() -> None:
    assert said("Merge pull request #31 from ada/parser\n\nfixes #12") == {"APM-12": ("fix", "done", 0)}
