"""Schemathesis hooks of ``make api-check`` (.ci/api-check): hostile input mixed into the generated cases.

Schemathesis generates requests that follow the schema, and breaks it in ways JSON Schema knows of. An
outside review found 500s in what it does not try: JSON nested 5,000 levels deep, lone surrogates and
NUL characters, times whose UTC instant is past year 9999, hand-made cursors. Here each generated case
of a write route may get one field of its body made hostile (tests/api/hostile.py), and each case of a
route with query parameters one parameter; the run's "not a server error" check does the rest.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st

from tests.api.hostile import hostile_body, hostile_query  # .ci/api-check puts the repository on the path

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _case_with(case: Any, **changes: Any) -> Any:
    fields = {
        "method": case.method,
        "path_parameters": case.path_parameters,
        "headers": case.headers,
        "cookies": case.cookies,
        "query": case.query,
        "body": case.body,
        "media_type": case.media_type,
    }
    return case.operation.Case(**{**fields, **changes})


def _body_of(text_or_dict: dict[str, Any] | str) -> dict[str, Any] | bytes:
    # JSON text (a body nested too deep for any encoder) is sent as its bytes, exactly as written.
    return text_or_dict.encode() if isinstance(text_or_dict, str) else text_or_dict


@schemathesis.hook
def flatmap_case(context: Any, case: Any) -> st.SearchStrategy[Any]:
    variants = [st.just(case)]
    if (
        case.method.upper() in WRITE_METHODS
        and isinstance(case.body, dict)
        and "json" in (case.media_type or "")
    ):
        variants.append(hostile_body(case.body).map(lambda body: _case_with(case, body=_body_of(body))))
    names = [parameter.name for parameter in case.operation.query]
    if names:
        variants.append(
            hostile_query(case.query or {}, names).map(lambda query: _case_with(case, query=query))
        )
    return st.one_of(variants)
