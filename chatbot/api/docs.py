"""The OpenAPI 3.1 document, built from the same pydantic models the views validate with.

A test checks that its operations are exactly the app's /api/v1 routes.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chatbot.api import PREFIX, admin
from chatbot.api import schemas as s
from chatbot.version import __version__

bp = Blueprint("docs", __name__)

PARENT, STAFF, NONE = "any", "staff", None
ADMIN = "admin"

# (method, path, summary, request body or query model, {status: response model}, auth)
Operation = tuple[str, str, str, type[BaseModel] | None, dict[int, type[BaseModel]], str | None]
OPERATIONS: list[Operation] = [
    ("post", "/chat/start", "Start a chat for a phone number", s.StartChat,
     {201: s.StartResult, 202: s.StartResult}, NONE),
    ("post", "/chat/verify", "Exchange a one-time code for a token", s.VerifyChat,
     {200: s.VerifyResult}, NONE),
    ("post", "/chat/messages", "Send a message; replies come back", s.SendMessage,
     {201: s.Turn, 200: s.Turn}, PARENT),
    ("get", "/chat/messages", "Message history, newest first", s.HistoryQuery,
     {200: s.History}, PARENT),
    ("post", "/chat/receipts", "Mark replies as delivered", s.Receipts,
     {200: s.ReceiptsResult}, PARENT),
    ("get", "/children", "The user's children", None, {200: s.Children}, PARENT),
    ("get", "/children/{child_id}", "A child with its 5 latest results", None,
     {200: s.ChildSummary}, PARENT),
    ("post", "/children/{child_id}/archive", "Archive a child (history kept)", None,
     {200: s.ArchivedChild}, PARENT),
    ("patch", "/children/{child_id}", "Correct a child's birth date or gestation",
     s.CorrectChild, {200: s.ArchivedChild}, PARENT),
    ("get", "/questionnaires/{questionnaire_id}", "One questionnaire's full result", None,
     {200: s.Questionnaire}, PARENT),
    ("get", "/worker/children", "Children at the given risk levels", s.RiskQuery,
     {200: s.WorkerChildren}, STAFF),
    ("get", "/worker/rescreens/overdue", "Children whose re-screen is overdue", s.OverdueQuery,
     {200: s.WorkerChildren}, STAFF),
    ("get", "/worker/stats", "Counts by risk level", None, {200: s.Stats}, STAFF),
    ("get", "/worker/posyandu", "The posyandu the health worker serves", None,
     {200: s.PosyanduList}, STAFF),
    ("get", "/worker/due", "The month's children due, overdue, to re-screen, referred",
     s.DueQuery, {200: s.DueList}, STAFF),
    ("get", "/worker/children/{child_id}", "A child's screenings and contacts", None,
     {200: s.ChildHistory}, STAFF),
    ("post", "/worker/children/{child_id}/contacts", "Record a contact or a referral visit",
     s.NewContact, {201: s.ContactResult}, STAFF),
    ("get", "/worker/export.csv", "The month's screenings as CSV (text/csv)", s.ExportQuery,
     {}, STAFF),
    ("get", "/admin/posyandu", "Every posyandu", None, {200: s.PosyanduList}, ADMIN),
    ("post", "/admin/posyandu", "Create a posyandu", s.NewPosyandu,
     {201: s.CreatedPosyandu}, ADMIN),
    ("put", "/admin/roles", "A user's role and posyandu", s.RoleGrant,
     {200: s.RoleResult}, ADMIN),
    ("get", "/admin/metrics/current", "Each instance's newest metrics snapshot", None,
     {200: admin.CurrentMetrics}, ADMIN),
    ("get", "/admin/metrics/history", "Metrics snapshots over a time range, oldest first",
     admin.HistoryQuery, {200: admin.MetricsHistory}, ADMIN),
    ("get", "/admin/alerts", "Open alerts, and past ones over a time range", admin.AlertsQuery,
     {200: admin.Alerts}, ADMIN),
    ("get", "/openapi.json", "This document", None, {}, NONE),
]  # fmt: skip

# One valid request body per model, shown to readers and sent first by schema-driven
# clients (schemathesis's examples phase): without it a fuzzer rarely finds a phone
# number this API accepts, and never gets past /chat/start's validation.
EXAMPLES: dict[type[BaseModel], dict[str, Any]] = {
    s.StartChat: {"phoneNumber": "081234567890", "language": "id"},
    s.VerifyChat: {"challengeId": "Zk3rJ0x2Qm8vT1aB", "code": "123456"},
    s.SendMessage: {"text": "halo", "clientMessageId": "web-1"},
    s.Receipts: {"messageIds": ["66a1f0c2e4b0a1b2c3d4e5f6"]},
    s.CorrectChild: {"birthDate": "2029-05-10", "gestationalWeeks": 38},
    s.NewContact: {"kind": "contacted", "note": "called, visit on Tuesday"},
    s.NewPosyandu: {"code": "MAWAR01", "name": "Posyandu Mawar"},
    s.RoleGrant: {"phoneNumber": "081234567890", "role": "health_worker", "posyandu": ["MAWAR01"]},
}

# GETs whose 200 carries an ETag, answered with 304 when If-None-Match names it: the
# response cache's views (chatbot/http_cache.py, @cached) and this document.
CONDITIONAL = {
    "/chat/messages", "/children", "/children/{child_id}", "/questionnaires/{questionnaire_id}",
    "/worker/children", "/worker/rescreens/overdue", "/worker/stats", "/worker/due",
    "/openapi.json",
}  # fmt: skip

ERRORS = {
    400: "Invalid input", 401: "Missing or invalid token", 403: "Role not allowed",
    404: "Not found", 409: "Busy or conflicting", 413: "Body too large",
    415: "Not JSON", 429: "Rate limited", 500: "Internal error", 503: "A dependency is down",
}  # fmt: skip


@cache
def openapi() -> dict[str, Any]:
    models = {m for op in OPERATIONS for m in [op[3], *op[4].values()] if m is not None}
    models.add(s.Error)
    _, top = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, responses, auth in OPERATIONS:
        op: dict[str, Any] = {"summary": summary, "operationId": f"{method}_{path}"}
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(path)
        ]
        if body is not None and method == "get":
            schema = body.model_json_schema()
            params += [
                {"name": name, "in": "query", "required": False, "schema": prop}
                for name, prop in schema["properties"].items()
            ]
        elif body is not None:
            content: dict[str, Any] = {"schema": _ref(body)}
            if body in EXAMPLES:
                content["example"] = EXAMPLES[body]
            op["requestBody"] = {"required": True, "content": {"application/json": content}}
        if params:
            op["parameters"] = params
        op["responses"] = {
            str(code): {
                "description": model.__name__,
                "content": {"application/json": {"schema": _ref(model)}},
            }
            for code, model in responses.items()
        } or {"200": {"description": "OK"}}
        if method == "get" and path in CONDITIONAL:
            op["responses"]["304"] = {"description": "Not modified: If-None-Match named the ETag"}
        for code, text in ERRORS.items():
            op["responses"].setdefault(
                str(code),
                {"description": text, "content": {"application/json": {"schema": _ref(s.Error)}}},
            )
        if auth:
            op["security"] = [{"bearer": []}]
        paths.setdefault(PREFIX + path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "chatbot API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


@cache
def _document_bytes() -> bytes:
    return json.dumps(openapi(), separators=(",", ":")).encode()


@bp.get("/openapi.json")
def document() -> ResponseReturnValue:
    """The document, serialised once per process; shared caches may keep it 5 minutes."""
    response = Response(_document_bytes(), mimetype="application/json")
    response.cache_control.public = True
    response.cache_control.max_age = 300
    response.add_etag()
    return response.make_conditional(request)
