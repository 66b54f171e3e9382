"""Text of people and repositories shown among APM's own words, whatever direction marks it carries.

A project name, a task title or a commit message may hold bidirectional controls (U+202E RIGHT-TO-LEFT
OVERRIDE and its kin): left open, one reverses everything after it in the same line, APM's words
included ("score 12" read as "21 erocs"), and can make a name look like another. So every such text is
shown in one of two ways:

- ``isolate`` in element content: escaped, then wrapped in ``<bdi>``, which keeps its direction marks
  (and its right-to-left words) to itself; nothing of the text is lost.
- ``bidi_strip`` where markup cannot go (``<title>``, attribute values such as ``title=`` and
  ``aria-label=``, SVG text): the controls are removed, the letters stay. Browsers and screen readers
  show those without any isolation, so an unbalanced control there would run into what follows.

``insights.charts`` uses ``bidi_strip`` on every text that enters an SVG.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# Embeddings and overrides (LRE, RLE, PDF, LRO, RLO), isolates (LRI, RLI, FSI, PDI), the implicit marks
# (LRM, RLM) and the Arabic letter mark.
BIDI_CONTROLS = frozenset(
    [*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A)), "\u200e", "\u200f", "\u061c"]
)
_REMOVE = dict.fromkeys(map(ord, BIDI_CONTROLS))


@register.filter(is_safe=False)
def bidi_strip(value: Any) -> str:
    """``value`` as text without bidirectional controls, for places that cannot isolate it."""
    return str(value).translate(_REMOVE)


@register.filter(is_safe=True, needs_autoescape=False)
def isolate(value: Any) -> SafeString:
    """``value`` escaped and isolated in ``<bdi>``: its direction marks end where it ends."""
    return mark_safe(f"<bdi>{conditional_escape(value)}</bdi>")  # noqa: S308 (escaped just above)
