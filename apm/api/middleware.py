"""Query strings of the API with NUL characters are refused before any view reads them.

PostgreSQL cannot compare text with a NUL in it (a ``DataError``, a 500). The filters' form fields refuse
it, each in words of its own, but not every parameter goes through one: ``ordering``, a view's own
parameters, a filter added tomorrow. One check here covers every parameter of every route, with one
message naming the parameter.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from apm.api.parsers import NUL_MESSAGE

API_PREFIX = "/api/"


class NulRefusalMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            # Paths need no check: every route's pattern for a key or an id leaves NUL out (a 404).
            refused = [
                name
                for name, values in request.GET.lists()
                if "\x00" in name or any("\x00" in value for value in values)
            ]
            if refused:
                errors = {name: [NUL_MESSAGE] for name in refused}
                return JsonResponse({"detail": "Invalid input.", "errors": errors}, status=400)
        return self.get_response(request)
