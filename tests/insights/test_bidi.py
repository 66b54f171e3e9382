"""Bidirectional controls in what people and repositories wrote (issue 13).

A project named "APM <b>bold</b> \u202e rtl" was escaped everywhere, but its RIGHT-TO-LEFT OVERRIDE
was left open: in the page's <title>, its <h1>, the dashboard's cells and the commits' title= attributes
it reversed APM's own words after it ("score 12" in the priorities panel). Every such text is now
isolated in <bdi> where markup can go, and stripped of its controls where it cannot (<title>, attribute
values, SVG text). The audit below reads each page as a browser would and says where a control escaped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client

from insights.charts import Marker, Series, bar_list, line_chart, sparkline
from insights.panels import PROJECT_PANELS, REPOSITORY_PANELS
from insights.templatetags.bidi import BIDI_CONTROLS, bidi_balance, bidi_strip
from projects.models import Project
from repos.models import Repository
from tasks.models import Task
from tests.factories import (
    CommitFactory,
    CommitTaskLinkFactory,
    FileChangeFactory,
    FileFactory,
    IngestionRunFactory,
    MembershipFactory,
    TaskFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

RLO, LRE, PDI = "\u202e", "\u202a", "\u2069"
ISOLATES = {"\u2066", "\u2067", "\u2068"}  # LRI, RLI, FSI
BIDI = re.compile(f"[{''.join(sorted(BIDI_CONTROLS))}]")

NAME = f"APM <b>bold</b> {RLO} rtl"
DESCRIPTION = f"Mirrors {LRE}the files{PDI} of {RLO}the team"
USERNAME = f"eve{RLO}dlrow"
TITLE = f"Fix {LRE}login{PDI} now {RLO} tail"
SUBJECT = f"Fix the {RLO}gnirts{PDI} parser"
AUTHOR = f"Eve {RLO}evE"
PATHS = (f"src/{RLO}gpj.exe/report.py", f"docs/{LRE}guide{PDI}.md")
REPOSITORY = f"alpha{RLO}-repo"
BRANCH = f"main{RLO}x"
ERROR = f"fatal: {RLO}bad object"

# Elements whose text no markup can isolate: the page's and the charts' titles and descriptions, SVG text.
NO_MARKUP = {"title", "desc", "text", "svg"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class BidiAudit(HTMLParser):
    """Where a bidi control stands in a page: inside an isolating element (``<bdi>``, any ``dir``), or
    loose in text, in a title or in an attribute value, where it would reach what follows it.

    An isolating element is an isolate (LRI...PDI) to the bidi algorithm: a PDI in its text that closes
    no isolate opened in that text closes the element's own, and what follows runs on. So each isolating
    element keeps the isolates its text opened, and such a PDI counts as loose.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # &#x202e; is the control itself to a browser
        # Open elements, each with the isolates its text opened if it is isolating (None if not).
        self.stack: list[tuple[str, list[str] | None]] = []
        self.loose: list[str] = []
        self.isolated: list[str] = []
        self.titles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and BIDI.search(value):
                self.loose.append(f"<{tag} {name}={value!r}>")
        if tag not in VOID:
            isolating = tag == "bdi" or any(name == "dir" for name, _ in attrs)
            self.stack.append((tag, [] if isolating else None))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        tags = [tag for tag, _ in self.stack]
        if tags and tags[-1] == "title" and "svg" not in tags:
            self.titles.append(data)
        if not BIDI.search(data):
            return
        frames = [opened for _, opened in self.stack if opened is not None]
        if NO_MARKUP & set(tags) or not frames:
            self.loose.append(f"{'>'.join(tags)}: {data!r}")
            return
        opened = frames[-1]
        for char in data:
            if char in ISOLATES:
                opened.append(char)
            elif char == PDI and not opened:
                self.loose.append(f"{'>'.join(tags)}: a PDI that ends the isolation in {data!r}")
            elif char == PDI:
                opened.pop()
        self.isolated.append(data)


def audit(html: str) -> BidiAudit:
    parser = BidiAudit()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture
def hostile(world: Any) -> dict[str, Any]:
    """ALPHA with bidi controls in every text a person or a repository gave it, and a member named so."""
    Project.objects.filter(pk=world.project.pk).update(name=NAME, description=DESCRIPTION)
    repository = world.objects["repository"]
    Repository.objects.filter(pk=repository.pk).update(name=REPOSITORY, default_branch=BRANCH)
    repository.refresh_from_db()
    user: Any = UserFactory(username=USERNAME)
    MembershipFactory(project=world.project, user=user, role="member")
    task = TaskFactory(project=world.project, title=TITLE, assignee=user, priority=Task.Priority.HIGH)
    # Three commits changing both files: enough for change coupling; one author: the bus factor's example.
    for number in range(3):
        message = f"{SUBJECT} {number}\n\nbody"
        commit = CommitFactory(repository=repository, message=message, author_name=AUTHOR)
        for path in PATHS:
            FileChangeFactory(commit=commit, path=path)
        CommitTaskLinkFactory(commit=commit, task=task)
    for path in PATHS:
        FileFactory(repository=repository, path=path)
    IngestionRunFactory(repository=repository, status="failed", error=ERROR)
    client = Client()
    client.force_login(user)
    return {"client": client, "repository": repository}


def pages(repository: Repository) -> list[str]:
    urls = ["/dashboard", "/projects/ALPHA/", f"/repositories/{repository.pk}/"]
    urls += [f"/projects/ALPHA/panels/{panel.name}/?window=90" for panel in PROJECT_PANELS]
    urls += [f"/repositories/{repository.pk}/panels/{panel.name}/?window=90" for panel in REPOSITORY_PANELS]
    return urls


def test_no_bidi_control_escapes_its_isolation_on_any_page_or_panel(hostile):
    isolated: list[str] = []
    for url in pages(hostile["repository"]):
        response = hostile["client"].get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, url
        page = audit(response.content.decode())
        assert page.loose == [], url
        isolated += page.isolated
    # Nothing was dropped: each text is shown whole inside its isolation, balanced (a PDF or PDI that
    # closes nothing of its own left out, what it leaves open closed at its end).
    shown = "\n".join(isolated)
    for text in (NAME, DESCRIPTION, USERNAME, TITLE, AUTHOR, *PATHS, REPOSITORY, BRANCH, ERROR):
        assert bidi_balance(text) in shown, text
        assert bidi_strip(text) in bidi_strip(shown), text
    assert bidi_balance(f"{SUBJECT} 2") in shown


def test_titles_and_attributes_keep_the_text_without_its_controls(hostile):
    client, repository = hostile["client"], hostile["repository"]
    project_page = client.get("/projects/ALPHA/").content.decode()
    assert audit(project_page).titles == [f"ALPHA {bidi_strip(NAME)} · APM"]
    assert f'content="{bidi_strip(NAME).replace("<", "&lt;").replace(">", "&gt;")}: progress' in project_page
    assert f'title="Signed in as {bidi_strip(USERNAME)}"' in project_page
    repository_page = client.get(f"/repositories/{repository.pk}/").content.decode()
    assert audit(repository_page).titles == [f"{bidi_strip(REPOSITORY)} (ALPHA) · APM"]
    assert f'title="{bidi_strip(ERROR)}"' in repository_page
    commits = client.get("/projects/ALPHA/panels/commits/").content.decode()
    assert f'<td title="{bidi_strip(SUBJECT)} 2">' in commits
    assert f'title="{bidi_strip(TITLE)} (' in commits


def test_the_priorities_score_is_outside_the_title_it_follows(hostile):
    """The issue's example: an open RLO in a title reversed the "score" after it."""
    fragment = hostile["client"].get("/projects/ALPHA/panels/priorities/").content.decode()
    title = re.escape(bidi_balance(TITLE))
    assert re.search(rf"<bdi>{title}</bdi> <span class=\"muted\"[^>]*>score \d+</span>", fragment)
    assert audit(fragment).loose == []


def test_charts_draw_no_bidi_control_and_isolate_their_html_labels():
    svg = line_chart(
        title=f"Burndown of {RLO}x",
        description=f"Remaining of {LRE}y{PDI}",
        labels=[f"Sep {RLO}1", "Sep 2"],
        series=[Series(f"Done{RLO}", "done", [1, 2])],
        markers=[Marker(1, f"{PDI}added")],
    )
    assert not BIDI.search(svg)
    for text in ("Burndown of x", "Remaining of y", "Sep 1", "Done", "added"):
        assert text in svg, text
    bars = bar_list(title=f"Hot{RLO}", rows=[(PATHS[0], 3, f"{PATHS[0]}: 3 changes")])
    assert audit(bars).loose == []
    assert f'title="{bidi_strip(PATHS[0])}: 3 changes"><bdi>{PATHS[0]}\u202c</bdi>' in bars
    spark = sparkline(label=f"{RLO}ALPHA, last 2 weeks", bars=[1, 2], line=[0, 1])
    assert not BIDI.search(spark)
    assert 'aria-label="ALPHA, last 2 weeks"' in spark


@pytest.mark.parametrize(
    ("text", "balanced"),
    [
        ("plain", "plain"),
        # A PDI that closes no isolate of the text would close the <bdi>'s: left out.
        (f"a{PDI}b", "ab"),
        (f"Fix {LRE}login{PDI} now {RLO} tail", f"Fix {LRE}login now {RLO} tail\u202c\u202c"),
        # An isolate closed by its PDI closes the embeddings opened inside it too.
        (f"\u2067x{RLO}y{PDI}z", f"\u2067x{RLO}y{PDI}z"),
        # A PDF closes an embedding, never an isolate; one that closes nothing is left out.
        ("\u2066x\u202cy", f"\u2066xy{PDI}"),
        (f"{RLO}x\u202cy\u202c", f"{RLO}x\u202cy"),
    ],
)
def test_isolated_text_is_balanced_so_it_cannot_close_its_isolation(text, balanced):
    assert bidi_balance(text) == balanced
