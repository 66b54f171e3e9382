"""Structured logs: every request is logged with a request id, JSON lines in production."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

from config.logging import logging_config


@pytest.mark.django_db
def test_requests_are_logged_with_their_request_id(client, caplog):
    caplog.set_level(logging.INFO, logger="django_structlog")

    client.get("/healthz", HTTP_X_REQUEST_ID="req-1234")

    events = [record.msg for record in caplog.records if isinstance(record.msg, dict)]
    finished = [event for event in events if event.get("event") == "request_finished"]
    assert finished, events
    assert finished[0]["request_id"] == "req-1234"
    assert finished[0]["code"] == 200


def test_production_format_is_one_json_object_per_line():
    spec = logging_config(level="INFO", json=True)["formatters"]["structured"]
    formatter = spec["()"](processors=spec["processors"], foreign_pre_chain=spec["foreign_pre_chain"])
    record = logging.LogRecord("apm.test", logging.WARNING, __file__, 1, "disk %s is full", ("/var",), None)

    line = formatter.format(record)

    payload = json.loads(line)
    assert payload["event"] == "disk /var is full"
    assert payload["level"] == "warning"
    assert payload["logger"] == "apm.test"
    assert "timestamp" in payload


def figures_that_do_not_add_up(request: HttpRequest) -> HttpResponse:
    password = "a secret the logs must not show"  # noqa: F841  (a local of the failing frame)
    raise ZeroDivisionError("the figures do not add up")


# This module is the URL configuration of the test below: one view that raises.
urlpatterns = [path("broken", figures_that_do_not_add_up)]


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_an_unhandled_error_is_logged_in_json_with_its_traceback():
    """Django logs "Internal Server Error" through the standard library (django.request), with the
    exception: the production JSON line carries its type, message and frames."""
    spec = logging_config(level="INFO", json=True)["formatters"]["structured"]
    handler = logging.StreamHandler(io.StringIO())
    formatter = spec["()"](processors=spec["processors"], foreign_pre_chain=spec["foreign_pre_chain"])
    handler.setFormatter(formatter)
    django_request = logging.getLogger("django.request")
    django_request.addHandler(handler)
    try:
        response = Client(raise_request_exception=False).get("/broken")
    finally:
        django_request.removeHandler(handler)

    assert response.status_code == 500
    assert isinstance(handler.stream, io.StringIO)
    lines = [json.loads(line) for line in handler.stream.getvalue().splitlines()]
    error = next(line for line in lines if line["event"] == "Internal Server Error: /broken")
    assert error["level"] == "error"
    (exception,) = error["exception"]
    assert exception["exc_type"] == "ZeroDivisionError"
    assert exception["exc_value"] == "the figures do not add up"
    assert exception["frames"][-1]["name"] == "figures_that_do_not_add_up"
    assert exception["frames"][-1]["filename"].endswith("test_logging.py")
    # The frames' local variables stay out of the logs (a password, a token, a request body).
    assert "a secret the logs must not show" not in handler.stream.getvalue()


@pytest.fixture(autouse=True)
def _structlog_restored():
    """logging_config() reconfigures structlog globally: put the suite's configuration back."""

    yield
    structlog.reset_defaults()
    logging_config(level=settings.LOG_LEVEL, json=settings.LOG_JSON)
