"""Hostile input for fuzzing the API: the shapes an outside review found reaching a 500.

JSON nested thousands of levels deep, lone surrogates and NUL characters in strings and keys, times whose
UTC instant falls outside the calendar, hand-made cursors, negative and huge numbers. Each strategy takes
a request that is valid (or was generated from the schema) and changes one part of it, so the request
still reaches the code behind the parser: a serializer, a filter set, a cursor, a service.

Shared by the Hypothesis test (tests/api/test_hostile_fuzz.py) and the Schemathesis hooks of
``make api-check`` (.ci/api_check_hooks.py): plain Hypothesis, no Django.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st

# Just past the parsers' limit (64), and the review's 5,000 levels.
DEPTHS = (65, 5000)

EXTREME_TIMES = (
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59.999999",
    "0001-01-01T00:00:00Z",
    "1899-12-31T23:59:59Z",
    "3000-01-01T00:00:00+00:00",
)
EXTREME_DAYS = ("0001-01-01", "9999-12-31", "1899-12-31", "3000-01-01")
EXTREME_NUMBERS = (-1, -0.25, 2**63, -(2**63) - 1, 10**30, 1e308)
CURSOR_POSITIONS = (
    *EXTREME_TIMES,
    "notadate",
    "",
    "99999999999999999999999",
    "2024-01-01T00:00:00\x00",
)


def cursor(position: str, *, reverse: bool = False) -> str:
    """A cursor as DRF writes one (base64 of its query string), at a hand-picked position."""
    fields = {"p": position, **({"r": "1"} if reverse else {})}
    return base64.b64encode(urlencode(fields).encode()).decode()


def nested_json(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


_words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
nul_text = st.builds(lambda a, b: f"{a}\x00{b}", _words, _words)
surrogate_text = st.builds(
    lambda a, s, b: f"{a}{chr(s)}{b}", _words, st.integers(min_value=0xD800, max_value=0xDFFF), _words
)
date_text = st.sampled_from(EXTREME_TIMES + EXTREME_DAYS)

# What a query parameter can carry: a URL encodes text as UTF-8, which a lone surrogate is not.
hostile_query_value = st.one_of(
    nul_text,
    date_text,
    st.sampled_from(CURSOR_POSITIONS).map(cursor),
    st.sampled_from(EXTREME_NUMBERS).map(str),
)
# What a JSON value can carry: all of the above, lone surrogates, and values of the wrong shape.
hostile_json_value = st.one_of(
    hostile_query_value,
    surrogate_text,
    st.sampled_from(EXTREME_NUMBERS),
    st.lists(st.one_of(nul_text, surrogate_text, date_text), min_size=1, max_size=3),
    st.dictionaries(st.one_of(nul_text, surrogate_text), st.integers(), min_size=1, max_size=2),
)


def _nested_body(body: dict[str, Any], name: str, depth: int) -> str:
    """``body`` as JSON text with ``name`` holding a list nested ``depth`` levels deep."""
    head = json.dumps({key: value for key, value in body.items() if key != name})[:-1]
    separator = ", " if len(head) > 1 else ""
    return f"{head}{separator}{json.dumps(name)}: {nested_json(depth)}}}"


def hostile_body(body: dict[str, Any]) -> st.SearchStrategy[dict[str, Any] | str]:
    """``body`` with one field (one it has, or a new one) made hostile; JSON text when nested too deep.

    A dict is sent as JSON (lone surrogates escaped as ``\\ud800``, which is how they arrive in the
    wild); the text of a deeply nested body is sent as it is, no encoder recursing through it.
    """
    names = st.sampled_from(sorted(body)) if body else st.just("title")
    replaced = st.builds(lambda name, value: {**body, name: value}, names, hostile_json_value)
    nested = st.builds(lambda name, depth: _nested_body(body, name, depth), names, st.sampled_from(DEPTHS))
    bad_key = st.builds(lambda key: {**body, key: "x"}, st.one_of(nul_text, surrogate_text))
    return st.one_of(replaced, nested, bad_key)


def hostile_query(query: dict[str, Any], names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """``query`` with one of ``names`` (the operation's parameters, ``cursor`` always) made hostile."""
    candidates = sorted({*names, "cursor"})
    return st.builds(
        lambda name, value: {**query, name: value}, st.sampled_from(candidates), hostile_query_value
    )
