"""Structured logs: every request is logged with a request id, JSON lines in production."""

from __future__ import annotations

import json
import logging

import pytest
import structlog
from django.conf import settings

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


@pytest.fixture(autouse=True)
def _structlog_restored():
    """logging_config() reconfigures structlog globally: put the suite's configuration back."""

    yield
    structlog.reset_defaults()
    logging_config(level=settings.LOG_LEVEL, json=settings.LOG_JSON)
