"""Answers compared across names: byte for byte, and by the queries each one made.

A route that looks a user up by name must answer an unknown name and an existing account it refuses
alike, with the same status, the same bytes and the same queries (a query only one branch makes would
show in the timing). Used by the projects' and the tasks' enumeration tests.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

Answer = tuple[int, bytes, list[str]]


def query_shape(sql: str) -> str:
    """``sql`` with its values masked: two names then differ only in which queries ran."""
    sql = re.sub(r"\bs\d+_x\d+\b", "savepoint", sql)  # savepoint names are numbered per transaction
    return re.sub(r"\b\d+\b", "N", re.sub(r"'(?:[^']|'')*'", "?", sql))


def answer_of(client: Any, method: str, url: str, body: Any = None) -> Answer:
    """The status, body and query shapes of one request."""
    with CaptureQueriesContext(connection) as captured:
        response = getattr(client, method)(url, body, format="json")
    return response.status_code, response.content, [query_shape(q["sql"]) for q in captured.captured_queries]


def assert_all_alike(answers: dict[str, Answer]) -> None:
    """Every answer has the first one's status, bytes and queries."""
    first_name, first = next(iter(answers.items()))
    for name, answer in answers.items():
        assert answer[:2] == first[:2], f"{name} is answered unlike {first_name}: {answer[:2]} != {first[:2]}"
        assert answer[2] == first[2], f"{name} makes other queries than {first_name}"
