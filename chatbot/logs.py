"""Structured JSON logs on stdout, each line carrying the request id."""

from __future__ import annotations

import logging
import os
import sys

from flask import g, has_request_context
from pythonjsonlogger.json import JsonFormatter

# One format for the app and for gunicorn's own loggers (see gunicorn.conf.py).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
RENAME_FIELDS = {"asctime": "time", "levelname": "level", "name": "logger"}
# The name of the root handler configure_logging adds (once per process).
HANDLER_NAME = "chatbot"


class RequestContextFilter(logging.Filter):
    """Stamp every record with the request id (or "-" outside a request) and the instance."""

    instance_id = os.environ.get("INSTANCE_ID", "-")

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = g.get("request_id", "-")
        elif not hasattr(record, "request_id"):
            record.request_id = "-"
        record.instance_id = self.instance_id
        return True


def make_formatter() -> logging.Formatter:
    return JsonFormatter(LOG_FORMAT, rename_fields=RENAME_FIELDS, timestamp=False)


def configure_logging(level: str, instance_id: str) -> None:
    """Send every logger's records to stdout as JSON; idempotent across app instances."""
    RequestContextFilter.instance_id = instance_id
    root = logging.getLogger()
    root.setLevel(level)
    if any(h.get_name() == HANDLER_NAME for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.set_name(HANDLER_NAME)  # marks our handler for idempotence
    handler.setFormatter(make_formatter())
    handler.addFilter(RequestContextFilter())
    root.addHandler(handler)
