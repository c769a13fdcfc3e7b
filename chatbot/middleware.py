"""Request ids and the headers every response carries."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, current_app, g, request

# nginx sends $request_id (32 hex chars); accept any short token-like id, else mint one.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def _assign_request_id() -> None:
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex


def _stamp_response(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "-")
    # Lets nginx logs, probes and tests tell which instance answered.
    response.headers["X-Instance-Id"] = current_app.config["INSTANCE_ID"]
    return response


def init_app(app: Flask) -> None:
    app.before_request(_assign_request_id)
    app.after_request(_stamp_response)
