"""The commit-message grammar: what a message says about the project's tasks.

Pure text processing, no database: ``CommitGrammar.parse`` turns one message into ``Mention`` values,
one per task it names. The rules are per project (``Project.commit_*`` fields), case-insensitive:

* ``APM-12`` anywhere (``refs APM-12``, ``(APM-12)``, ``APM-12:``): a reference (a link, nothing else);
* ``#12``: the same, read as a task of the repository's own project, when the project opts in (on a
  GitHub-hosted history ``#12`` is a pull request or an issue there, not an APM task);
* ``fixes APM-12`` / ``closes APM-12, APM-13 and #14``: close the tasks (``fix`` or ``close`` action);
* ``APM-12 @2h30m``: time spent on the task (``1d`` is 8 hours, ``1w`` 5 days, ``1.5h`` works);
* ``APM-12 #in_review``: move the task to that status (status names, or the project's extra tags).

Tags and durations attach to the reference right before them: ``APM-12 #in_review @45m``.
Anything the grammar cannot honour (an unknown tag after a key) comes back as a ``problem`` for the
ingestion run's notes, never as an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from projects.keys import PROJECT_KEY_ANY_CASE
from projects.workflow import TaskStatus, keywords_parse

# Strongest first: when a message says several things about one task, its link records the strongest.
ACTION_STRENGTH = ("fix", "close", "transition", "time", "reference")

_KEY = rf"{PROJECT_KEY_ANY_CASE}-\d{{1,9}}"
# "#12" after "pull request" or "PR" is a pull request whatever the project's setting: GitHub's merge
# subjects ("Merge pull request #5962 from ...") and Bitbucket's ("(pull request #12)") name one.
_SHORT = r"(?<!pull request )(?<!\bPR )#\d{1,9}"
# A task reference: KEY-N, or #N when short references are on. Not part of a longer word, path,
# version or e-mail address ("xAPM-1", "refs/APM-1.txt", "git-2.26.0", "me+git-2014@example.com" are not
# references; "(APM-1)", "APM-1:" and "APM-1." at the end of a sentence are).
_REF_TEMPLATE = r"(?<![\w/.#+-])(?P<ref>{alternatives})(?![\w-]|\.\w|@[A-Za-z])"
# What may follow a reference and attach to it: status tags and durations, in any order.
_TRAILER = re.compile(r"\s*(?:(?P<tag>#[A-Za-z][\w-]{0,39})|@(?P<duration>[0-9][0-9.]*[wdhm][0-9.wdhm]*))")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhm])")
_MINUTES_PER_UNIT = {"w": 5 * 8 * 60, "d": 8 * 60, "h": 60, "m": 1}
# A spent-time entry longer than this is a typo (@200h meant @2h), not a week of work: reported, not logged.
MAX_MINUTES = 7 * 24 * 60
# Only the start of a longer message is read (a squash of hundreds of commits still fits).
MAX_MESSAGE = 100_000
# What closing keywords move a task to.
CLOSED_STATUS = TaskStatus.DONE.value


def duration_minutes(text: str) -> int | None:
    """``2h30m`` -> 150; ``None`` if ``text`` is not a duration."""
    text = text.lower()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    units = [unit for _, unit in parts]
    if len(set(units)) != len(units):
        return None  # "2h3h" is a typo, not five hours
    total = sum((Decimal(number) * _MINUTES_PER_UNIT[unit] for number, unit in parts), Decimal(0))
    minutes = int(total.to_integral_value())
    return minutes if minutes > 0 else None


@dataclass
class Mention:
    """What one message says about one task (number ``number`` of project ``key``)."""

    key: str  # the project key as written, upper-cased
    number: int
    actions: set[str] = field(default_factory=set)
    status: str = ""  # target status of a transition tag
    minutes: int = 0  # time spent, summed if written twice

    @property
    def task_key(self) -> str:
        return f"{self.key}-{self.number}"

    @property
    def target_status(self) -> str:
        """The status the message moves the task to: done when it closes it, else its tag's, else none."""
        return CLOSED_STATUS if self.action in ("fix", "close") else self.status

    @property
    def action(self) -> str:
        """The strongest thing the message asks for this task (what the link records)."""
        return next(action for action in ACTION_STRENGTH if action in self.actions or action == "reference")


@dataclass
class Parsed:
    mentions: list[Mention]
    problems: list[str]


@dataclass(frozen=True)
class CommitGrammar:
    """The rules of one project. Build it once per ingestion and parse every message with it."""

    project_key: str
    close_keywords: tuple[str, ...]
    status_tags: Mapping[str, str]
    short_references: bool = False
    time_logging: bool = True
    _patterns: dict[str, re.Pattern[str]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        alternatives = f"{_KEY}|{_SHORT}" if self.short_references else _KEY
        ref = _REF_TEMPLATE.format(alternatives=alternatives)
        self._patterns["ref"] = re.compile(ref, re.IGNORECASE)
        # A keyword followed by a list of references: "fixes APM-1, APM-2 and #3".
        # Each separator matches one way only (a comma/ampersand/"and" with optional spaces, or spaces
        # alone): an ambiguous one would let a message of many spaces take quadratic time.
        separator = r"(?:\s*(?:,|&|\band\b)\s*|\s+)"
        listed = rf"{ref}(?:{separator}(?<![\w/.#-])(?:{alternatives})(?![\w-]))*"
        if self.close_keywords:
            keywords = "|".join(
                re.escape(word) for word in sorted(self.close_keywords, key=len, reverse=True)
            )
            self._patterns["close"] = re.compile(
                rf"(?<![\w-])(?P<keyword>{keywords})(?:\s*:\s*|\s+)(?P<list>{listed.replace('?P<ref>', '')})",
                re.IGNORECASE,
            )

    def _ref_split(self, text: str) -> tuple[str, int]:
        if text.startswith("#"):
            return self.project_key, int(text[1:])
        key, _, number = text.rpartition("-")
        return key.upper(), int(number)

    def parse(self, message: str) -> Parsed:
        """Every task ``message`` names, with what it asks for each; problems for the run's notes."""
        message = message[:MAX_MESSAGE]
        mentions: dict[tuple[str, int], Mention] = {}
        problems: list[str] = []

        def mention(ref: str) -> Mention:
            key, number = self._ref_split(ref)
            return mentions.setdefault((key, number), Mention(key=key, number=number))

        ref_pattern = self._patterns["ref"]
        for match in ref_pattern.finditer(message):
            current = mention(match.group("ref"))
            current.actions.add("reference")
            position = match.end()
            while trailer := _TRAILER.match(message, position):
                position = trailer.end()
                if trailer.group("tag"):
                    self._tag_apply(current, trailer.group("tag"), problems)
                else:
                    self._duration_apply(current, trailer.group("duration"), problems)
        if "close" in self._patterns:
            for match in self._patterns["close"].finditer(message):
                action = "fix" if match.group("keyword").lower().startswith("fix") else "close"
                for ref in ref_pattern.finditer(match.group("list")):
                    mention(ref.group("ref")).actions.add(action)
        return Parsed(mentions=list(mentions.values()), problems=problems)

    def _tag_apply(self, mention: Mention, tag: str, problems: list[str]) -> None:
        name = tag[1:].lower().replace("-", "_")
        status = self.status_tags.get(name)
        if status is None:
            problems.append(
                f"{mention.task_key}: {tag} is not a status or a transition tag of {self.project_key}."
            )
            return
        mention.actions.add("transition")
        mention.status = status

    def _duration_apply(self, mention: Mention, text: str, problems: list[str]) -> None:
        if not self.time_logging:
            return
        minutes = duration_minutes(text)
        if minutes is None or mention.minutes + minutes > MAX_MINUTES:
            problems.append(f"{mention.task_key}: @{text} is not a time spent this grammar accepts.")
            return
        mention.actions.add("time")
        mention.minutes += minutes


def grammar_build(
    *,
    project_key: str,
    close_keywords: str,
    extra_status_tags: Mapping[str, str],
    statuses: Iterable[str],
    short_references: bool,
    time_logging: bool,
) -> CommitGrammar:
    """A grammar from a project's settings; every status name is a tag, plus the project's extras."""
    tags = {status: status for status in statuses}
    tags.update(
        {tag.lower().lstrip("#").replace("-", "_"): status for tag, status in extra_status_tags.items()}
    )
    return CommitGrammar(
        project_key=project_key.upper(),
        close_keywords=tuple(keywords_parse(close_keywords)),
        status_tags=tags,
        short_references=short_references,
        time_logging=time_logging,
    )
