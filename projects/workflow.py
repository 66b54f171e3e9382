"""The vocabulary a project's settings speak: the statuses its tasks move through and the words of its
commit grammar.

It lives with projects because a project's commit grammar settings (``Project.commit_*``) are checked
against it when they are saved; the tasks app moves tasks through these statuses (``Task.Status``) and
the repositories app reads commit messages with these words (``repos.grammar``).
"""

from __future__ import annotations

import re

from django.db import models


class TaskStatus(models.TextChoices):
    BACKLOG = "backlog", "Backlog"
    TODO = "todo", "To do"
    IN_PROGRESS = "in_progress", "In progress"
    IN_REVIEW = "in_review", "In review"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"


DEFAULT_CLOSE_KEYWORDS = "close closes closed fix fixes fixed resolve resolves resolved"

# The project fields that make its commit grammar: how commit messages move its tasks
# (docs/automation.md). Services, the API and the admin change them together.
GRAMMAR_FIELDS = (
    "commit_automation",
    "commit_close_keywords",
    "commit_status_tags",
    "commit_short_references",
    "commit_time_logging",
)

_WORD = re.compile(r"[a-z][a-z-]{0,29}")
# A status tag as written after a task key: ``#in_review``, ``#review``.
STATUS_TAG = r"#?[A-Za-z][\w-]{0,39}"


def keywords_parse(text: str) -> list[str]:
    """The keywords of a ``commit_*_keywords`` field: lower-case words separated by spaces or commas."""
    return [word for word in re.split(r"[\s,]+", text.strip().lower()) if word]


def keywords_problems(text: str) -> list[str]:
    """Why ``text`` is not a valid keyword list (empty list when it is)."""
    bad = [word for word in keywords_parse(text) if not _WORD.fullmatch(word)]
    return [f"{word!r} is not a keyword: use letters (and hyphens) only." for word in bad]


def status_tags_problems(tags: object) -> list[str]:
    """Why ``tags`` (``Project.commit_status_tags``) is not a map of tag to task status."""
    if not isinstance(tags, dict):
        return ['Give an object of tag to status, e.g. {"review": "in_review"}.']
    return [
        f"#{tag} -> {status!r}: tags are letters, digits, _ or -, and {status!r} must be a task status."
        for tag, status in tags.items()
        if not isinstance(status, str)
        or status not in TaskStatus.values
        or not re.fullmatch(STATUS_TAG, str(tag))
    ]
