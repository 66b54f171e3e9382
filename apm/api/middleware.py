"""Requests to the API that Django would refuse before any view answers in the API's words.

Every route of ``/api/`` ends with a slash, and without it Django's ``APPEND_SLASH`` redirected (a POST
lost on the way, or, under DEBUG, an HTML error page): ``ApiSlashMiddleware`` serves the slashed route in
place, for every method.

Query strings of the API with NUL characters are refused before any view reads them.

PostgreSQL cannot compare text with a NUL in it (a ``DataError``, a 500). The filters' form fields refuse
it, each in words of their own, but not every parameter goes through one: ``ordering``, a view's own
parameters, a filter added tomorrow. One check here covers every parameter of every API view, wherever
it is mounted (``/api/v1/...`` and the load test's ``/projects``), with one message naming the parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.views import APIView

from apm.api.parsers import NUL_MESSAGE


class ApiSlashMiddleware:
    """``/api/v1/tasks`` is ``/api/v1/tasks/``: the path is completed before the URL is resolved.

    Paths with a NUL are the JSON 404 and chunked bodies a 411 here too, before any view reads them.

    A redirect cannot carry a POST's body (clients replay it as a GET, or not at all), and the API's
    catch-all then answers a path that matches nothing with its JSON 404 instead of Django's page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith("/api/"):
            return self.get_response(request)
        if "\x00" in request.path_info:
            # A NUL in a path segment reached lookups by name (a member's username) and failed the query.
            return JsonResponse({"detail": "Not found."}, status=404)
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower() and not request.META.get(
            "CONTENT_LENGTH"
        ):
            # WSGI gives Django no length for a chunked body, and Django then reads it as empty: a signed
            # push failed its signature and a new task missed every field, each with a misleading answer.
            return JsonResponse(
                {"detail": "Send the body with a Content-Length header: chunked bodies are not read."},
                status=411,
            )
        if not request.path_info.endswith("/"):
            request.path_info += "/"
            request.path += "/"
        return self.get_response(request)


class NulRefusalMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        view_class = getattr(view_func, "cls", None)  # what DRF's as_view() leaves on the view
        if not (isinstance(view_class, type) and issubclass(view_class, APIView)):
            return None
        refused = [
            name
            for name, values in request.GET.lists()
            if "\x00" in name or any("\x00" in value for value in values)
        ]
        if not refused:
            return None
        errors = {name: [NUL_MESSAGE] for name in refused}
        return JsonResponse({"detail": "Invalid input.", "errors": errors}, status=400)
