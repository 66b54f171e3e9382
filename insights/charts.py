"""Charts drawn on the server as inline SVG: no script, no network, nothing to load after the page.

Each chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` that says in words what it shows;
the pages put a table of the same numbers behind every chart (``<details>``), so a screen reader, a text
browser and a person who wants the figures all get them. Colours come from classes (``series-*``) styled
by ``insights/pages.css``, so the admin and the pages share one look and the markup carries no styles.

The functions take plain numbers and strings and return ``SafeString``; every text that enters the SVG
goes through ``format_html``, and through ``bidi_strip`` first: SVG text and attributes have no way to
isolate a name's direction marks, and one left open would reverse the chart's own words after it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from insights.templatetags.bidi import bidi_strip, isolate

# One drawing unit is one CSS pixel at the chart's natural width; the SVG scales to its container.
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 26


@dataclass(frozen=True)
class Series:
    """One line of a chart: ``values`` line up with the chart's ``labels``; ``None`` leaves a gap."""

    name: str
    css: str
    values: Sequence[float | None]
    dashed: bool = False


@dataclass(frozen=True)
class Marker:
    """A point of interest on the x axis (a scope change), drawn as a tick with its explanation."""

    index: int
    text: str
    css: str = "marker"


@dataclass
class _Frame:
    points: int
    top: float
    plot_width: float = field(init=False)
    plot_height: float = field(init=False)

    def __post_init__(self) -> None:
        self.plot_width = WIDTH - LEFT - RIGHT
        self.plot_height = HEIGHT - TOP - BOTTOM

    def x(self, index: int) -> float:
        if self.points <= 1:
            return LEFT + self.plot_width / 2
        return LEFT + self.plot_width * index / (self.points - 1)

    def y(self, value: float) -> float:
        return TOP + self.plot_height * (1 - (value / self.top if self.top else 0))


def nice_scale(value: float, *, whole: bool = False) -> tuple[float, float]:
    """The top of an axis reaching ``value`` and the step of its grid lines: about four steps of a
    "round" size (1, 2, 2.5 or 5 times a power of ten; 2.5 left out when ``whole`` numbers are counted)."""
    if value <= 0:
        return 1.0, 0.25 if not whole else 1.0
    rough = value / 4
    magnitude = 10.0 ** math.floor(math.log10(rough))
    steps = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)
    step = next(candidate * magnitude for candidate in steps if rough <= candidate * magnitude)
    if whole:
        step = max(1.0, step)
    return step * math.ceil(value / step - 1e-9), step


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _path(frame: _Frame, values: Sequence[float | None]) -> str:
    commands: list[str] = []
    pen_up = True
    for index, value in enumerate(values):
        if value is None:
            pen_up = True
            continue
        commands.append(f"{'M' if pen_up else 'L'}{frame.x(index):.1f},{frame.y(value):.1f}")
        pen_up = False
    return " ".join(commands)


def line_chart(
    *,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    markers: Sequence[Marker] = (),
    percent: bool = False,
) -> SafeString:
    """A line chart of ``series`` over ``labels`` (dates, weeks), with horizontal grid lines and markers.

    ``percent`` reads values as fractions (0.42) and labels the axis 0-100 %.
    """
    title, description = bidi_strip(title), bidi_strip(description)
    labels = [bidi_strip(label) for label in labels]
    # Unique on a page (each chart has its own title) and the same at every rendering, so that a cached
    # fragment and a fresh one are identical and two panels never share an id.
    chart_id = "chart-" + hashlib.sha256(f"{title}\n{description}".encode()).hexdigest()[:12]
    highest = max((value for line in series for value in line.values if value is not None), default=0.0)
    whole = all(float(value).is_integer() for line in series for value in line.values if value is not None)
    top, step = (1.0, 0.25) if percent else nice_scale(highest, whole=whole)
    frame = _Frame(points=len(labels), top=top)
    grid = []
    for index in range(round(top / step) + 1):
        value = step * index
        text = f"{value * 100:.0f}%" if percent else _number(value)
        grid.append(
            (LEFT, f"{frame.y(value):.1f}", WIDTH - RIGHT, LEFT - 6, f"{frame.y(value) + 4:.1f}", text)
        )
    grid_svg = format_html_join(
        "",
        '<line class="grid" x1="{}" y1="{}" x2="{}" y2="{}"></line><text class="tick" x="{}" y="{}" '
        'text-anchor="end">{}</text>',
        ((x1, y, x2, y, tx, ty, text) for x1, y, x2, tx, ty, text in grid),
    )
    ticks = sorted({0, len(labels) // 2, len(labels) - 1}) if labels else []
    x_svg = format_html_join(
        "",
        '<text class="tick" x="{}" y="{}" text-anchor="{}">{}</text>',
        (
            (
                f"{frame.x(index):.1f}",
                HEIGHT - 8,
                "start"
                if index == 0 and len(labels) > 1
                else "end"
                if index == len(labels) - 1
                else "middle",
                labels[index],
            )
            for index in ticks
        ),
    )
    lines_svg = format_html_join(
        "",
        '<path class="series series-{}{}" d="{}"><title>{}</title></path>',
        (
            (line.css, " dashed" if line.dashed else "", _path(frame, line.values), bidi_strip(line.name))
            for line in series
            if any(value is not None for value in line.values)
        ),
    )
    markers_svg = format_html_join(
        "",
        '<line class="{}" x1="{}" y1="{}" x2="{}" y2="{}"><title>{}</title></line>',
        (
            (
                marker.css,
                f"{frame.x(marker.index):.1f}",
                HEIGHT - BOTTOM,
                f"{frame.x(marker.index):.1f}",
                HEIGHT - BOTTOM - 8,
                bidi_strip(marker.text),
            )
            for marker in markers
            if 0 <= marker.index < len(labels)
        ),
    )
    return format_html(
        '<svg class="chart-svg" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-t {}-d" '
        'preserveAspectRatio="none"><title id="{}-t">{}</title><desc id="{}-d">{}</desc>'
        '<g class="axes">{}{}</g><g class="lines">{}</g><g class="markers">{}</g></svg>',
        WIDTH,
        HEIGHT,
        chart_id,
        chart_id,
        chart_id,
        title,
        chart_id,
        description,
        grid_svg,
        x_svg,
        lines_svg,
        markers_svg,
    )


def bar_list(
    *, title: str, rows: Sequence[tuple[str, float, str]], css: str = "bar", value_format: str = "{:g}"
) -> SafeString:
    """Horizontal bars, one per ``(label, value, detail)`` row, longest first as given.

    Drawn as an HTML list with one SVG bar per row (the label stays selectable text, isolated in
    ``<bdi>``), titled for assistive technology as a list, since the numbers are in the text too.
    """
    highest = max((value for _label, value, _detail in rows), default=0) or 1
    items = format_html_join(
        "",
        '<li><span class="bar-label" title="{}">{}</span><svg class="bar-svg" viewBox="0 0 100 10" '
        'preserveAspectRatio="none" aria-hidden="true"><rect class="{}" x="0" y="1" width="{}" '
        'height="8"></rect></svg><span class="bar-value">{}</span></li>',
        (
            (
                bidi_strip(detail or label),
                isolate(label),
                css,
                f"{max(0.5, 100 * value / highest):.1f}",
                value_format.format(value),
            )
            for label, value, detail in rows
        ),
    )
    return format_html('<ul class="bars" aria-label="{}">{}</ul>', bidi_strip(title), items)


def sparkline(*, label: str, bars: Sequence[int], line: Sequence[int]) -> SafeString:
    """A small weekly activity chart: ``bars`` (commits) as columns and ``line`` (tasks closed) as a line.

    Each has its own scale (hundreds of commits would flatten a handful of closed tasks): the chart shows
    the shape of each week over week, and ``label``, its text alternative, gives the numbers.
    """
    width, height, gap = 96, 24, 1
    weeks = max(len(bars), len(line), 1)
    step = width / weeks
    top = max([*bars, 1])
    line_top = max([*line, 1])
    columns = format_html_join(
        "",
        '<rect class="spark-bar" x="{}" y="{}" width="{}" height="{}"></rect>',
        (
            (
                f"{index * step + gap / 2:.1f}",
                f"{height - height * value / top:.1f}",
                f"{step - gap:.1f}",
                f"{height * value / top:.1f}",
            )
            for index, value in enumerate(bars)
        ),
    )
    points = " ".join(
        f"{(index + 0.5) * step:.1f},{height - (height - 2) * value / line_top - 1:.1f}"
        for index, value in enumerate(line)
    )
    polyline = format_html('<polyline class="spark-line" points="{}"></polyline>', points) if line else ""
    return format_html(
        '<svg class="spark" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">{}{}</svg>',
        width,
        height,
        width,
        height,
        bidi_strip(label),
        columns,
        polyline,
    )
