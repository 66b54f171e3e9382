"""One error shape for every API response: ``{"detail": "...", "errors": {"field": ["..."]}}``.

``detail`` is always there and says what went wrong in one sentence; ``errors`` is there for invalid
input and maps each field (``non_field_errors`` for the request as a whole) to its messages. Services
raise Django's ``ValidationError``; it is turned into a 400 here, so no view has to catch it.

Every string of an error is made encodable before it is rendered: a message may echo what the client sent,
and a lone surrogate in it (``"\\ud800"``) cannot be written as UTF-8. The parsers refuse such text, this
is the second line. A body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is a 413, not the 400 Django gives it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def _django_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {
            ("non_field_errors" if field == "__all__" else field): messages
            for field, messages in exc.message_dict.items()
        }
    return {"non_field_errors": exc.messages}


class RequestBodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"

    def __init__(self) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        super().__init__(f"The request body is larger than the {limit:,} bytes the API accepts.")


def _encodable(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) written as ``\\udXXX``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _flatten(errors: Any) -> Any:
    """DRF's ``ErrorDetail`` strings as plain, encodable strings, nested lists and dicts kept."""
    if isinstance(errors, dict):
        return {_encodable(str(key)): _flatten(value) for key, value in errors.items()}
    if isinstance(errors, list):
        return [_flatten(value) for value in errors]
    return _encodable(str(errors))


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_errors(exc))
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestBodyTooLarge()
    elif isinstance(exc, Http404):
        # DRF passes Django's message on ("No Project matches the given query."): one wording for every
        # 404, the same as a URL that matches nothing, and no model names.
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django's handler500 answers (in JSON under /api/, see config.urls)
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"detail": "Invalid input.", "errors": _flatten(errors)}
    elif isinstance(exc, exceptions.ParseError):
        # A body that is not valid JSON (or form data): still the 400 shape, so clients read one format.
        detail = _encodable(str(response.data["detail"]))
        response.data = {"detail": "Malformed request body.", "errors": {"non_field_errors": [detail]}}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": _encodable(str(response.data["detail"]))}
    return response


class ErrorSerializer(serializers.Serializer):
    """The body of every error response (documented in the schema)."""

    detail = serializers.CharField()


def api_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"detail": "Not found."}, status=404)


def api_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"detail": "Server error. It has been logged; try again later."}, status=500)


def api_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        # Django reads the body (and refuses it) outside DRF too, e.g. for a signed-in form's CSRF check.
        too_large = RequestBodyTooLarge()
        return JsonResponse({"detail": str(too_large.detail)}, status=too_large.status_code)
    return JsonResponse({"detail": "Bad request."}, status=400)


def api_permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
