"""OpenAPI: the error responses every operation can give, documented once for all of them."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_VALIDATION_ERROR = {
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "errors": {
            "type": "object",
            "description": "Messages per field; `non_field_errors` for the request as a whole.",
            "additionalProperties": {},
        },
    },
    "required": ["detail", "errors"],
}


def _response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def error_responses_add(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Add 400/401/403/404/429 to each operation that can answer them, unless it documents its own."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", _ERROR)
    schemas.setdefault("ValidationError", _VALIDATION_ERROR)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            public_operation = operation.get("security") == [] or {} in operation.get("security", [{}])
            if method in ("post", "put", "patch") or operation.get("parameters"):
                responses.setdefault(
                    "400", _response("Invalid input: messages per field.", "ValidationError")
                )
            if not public_operation:
                responses.setdefault("401", _response("Not authenticated, or the token is invalid.", "Error"))
                responses.setdefault(
                    "403", _response("Your role or token scope does not allow this.", "Error")
                )
            if "{" in path:
                responses.setdefault("404", _response("No such object among those you may see.", "Error"))
            responses.setdefault("429", _response("Too many requests; see the Retry-After header.", "Error"))
    return result
