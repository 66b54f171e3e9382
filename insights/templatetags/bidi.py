"""Text of people and repositories shown among APM's own words, whatever direction marks it carries.

A project name, a task title or a commit message may hold bidirectional controls (U+202E RIGHT-TO-LEFT
OVERRIDE and its kin): left open, one reverses everything after it in the same line, APM's words
included ("score 12" read as "21 erocs"), and can make a name look like another. So every such text is
shown in one of two ways:

- ``isolate`` in element content: balanced, escaped, then wrapped in ``<bdi>``, which keeps its direction
  marks (and its right-to-left words) to itself; nothing of the text is lost. Balanced, because a
  ``<bdi>`` is an isolate like LRI...PDI: a PDI of the text's own that closes no isolate of the text
  would close the ``<bdi>``'s, and whatever the text opens after it would run on (seen in Chromium).
- ``bidi_strip`` where markup cannot go (``<title>``, attribute values such as ``title=`` and
  ``aria-label=``, SVG text): the controls are removed, the letters stay. Browsers and screen readers
  show those without any isolation, so an unbalanced control there would run into what follows.

``insights.charts`` uses ``bidi_strip`` on every text that enters an SVG.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeData, SafeString, mark_safe

register = template.Library()

# Embeddings and overrides (LRE, RLE, PDF, LRO, RLO), isolates (LRI, RLI, FSI, PDI), the implicit marks
# (LRM, RLM) and the Arabic letter mark.
BIDI_CONTROLS = frozenset(
    [*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A)), "\u200e", "\u200f", "\u061c"]
)
_REMOVE = dict.fromkeys(map(ord, BIDI_CONTROLS))
_EMBEDDINGS = frozenset("\u202a\u202b\u202d\u202e")  # LRE, RLE, LRO, RLO: closed by PDF
_ISOLATES = frozenset("\u2066\u2067\u2068")  # LRI, RLI, FSI: closed by PDI
_PDF, _PDI = "\u202c", "\u2069"


def bidi_balance(text: str) -> str:
    """``text`` with every embedding and isolate it opens closed at its end, and without the PDF and PDI
    that close nothing it opened (they would close what surrounds it), as the Unicode bidi algorithm
    pairs them (a PDI also closes the embeddings opened since its isolate)."""
    if not any(char in BIDI_CONTROLS for char in text):
        return text
    kept: list[str] = []
    opened: list[str] = []
    for char in text:
        if char in _EMBEDDINGS or char in _ISOLATES:
            opened.append(char)
        elif char == _PDF:
            if not opened or opened[-1] not in _EMBEDDINGS:
                continue
            opened.pop()
        elif char == _PDI:
            if not any(mark in _ISOLATES for mark in opened):
                continue
            while opened.pop() not in _ISOLATES:
                pass
        kept.append(char)
    closing = "".join(_PDI if mark in _ISOLATES else _PDF for mark in reversed(opened))
    return "".join(kept) + closing


@register.filter(is_safe=False)
def bidi_strip(value: Any) -> str:
    """``value`` as text without bidirectional controls, for places that cannot isolate it."""
    return str(value).translate(_REMOVE)


@register.filter(is_safe=True, needs_autoescape=False)
def isolate(value: Any) -> SafeString:
    """``value`` balanced, escaped and isolated in ``<bdi>``: its direction marks end where it ends."""
    text = bidi_balance(str(value))
    if isinstance(value, SafeData):  # markup already (controls are never part of a tag)
        text = mark_safe(text)  # noqa: S308
    return mark_safe(f"<bdi>{conditional_escape(text)}</bdi>")  # noqa: S308 (escaped just above)
