"""The HTTP API under /api/v1: thin views that validate, call a service, respond."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import Flask, current_app, request
from pydantic import BaseModel, ValidationError

from chatbot.errors import ApiError

PREFIX = "/api/v1"
M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M]) -> M:
    """The request's JSON body validated as `model`: 415 if not JSON, 400 if invalid."""
    if not request.is_json:
        raise ApiError("Send a JSON body with Content-Type: application/json.", status=415,
                       code="unsupported_media_type")  # fmt: skip
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError("The body is not valid JSON.", code="invalid_json")
    return validate(model, data)


def parse_query(model: type[M]) -> M:
    return validate(model, request.args.to_dict())


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(
            "The request is not valid.", code="validation_error", details=details
        ) from None


def service():
    from chatbot.chat.service import ChatService
    from chatbot.extensions import banks, mongo, redis_store

    app = current_app
    return ChatService(
        mongo.db,
        redis_store,
        app.config["SETTINGS"],
        banks,
        app.extensions["chatbot.tokens"],
        app.extensions["chatbot.cache"],
    )


def init_app(app: Flask) -> None:
    from chatbot.api import chat, children, docs, worker

    for module in (chat, children, worker, docs):
        app.register_blueprint(module.bp, url_prefix=PREFIX)
