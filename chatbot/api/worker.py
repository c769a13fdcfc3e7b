"""Health-worker and admin views: children at risk, overdue re-screens, counts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from chatbot.api import parse_query
from chatbot.api.auth import auth_required
from chatbot.api.children import public_child
from chatbot.api.schemas import OverdueQuery, RiskQuery
from chatbot.auth import STAFF_ROLES
from chatbot.db.children import ChildRepository
from chatbot.db.users import UserRepository
from chatbot.extensions import safe_cache_get, safe_cache_set
from chatbot.http_cache import cached
from chatbot.services import services

bp = Blueprint("worker", __name__)


def _with_parent_phone(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each parent's phone number (one query for the whole page)."""
    phones = UserRepository(services().db).phones_for([c["userId"] for c in children])
    return [{**public_child(c), "parentPhone": phones.get(c["userId"])} for c in children]


@bp.get("/worker/children")
@auth_required(*STAFF_ROLES)
@cached("staff")
def at_risk() -> ResponseReturnValue:
    """Children whose latest screening is at one of the given risk levels."""
    query = parse_query(RiskQuery)
    children = ChildRepository(services().db).at_risk(
        query.risk.split(","), query.limit + 1, query.cursor
    )
    page = children[: query.limit]
    next_cursor = page[-1]["id"] if len(children) > query.limit else None
    return jsonify(children=_with_parent_phone(page), nextCursor=next_cursor)


@bp.get("/worker/rescreens/overdue")
@auth_required(*STAFF_ROLES)
@cached("staff", by_day=True)
def overdue() -> ResponseReturnValue:
    """Children whose next screening date has passed, most overdue first."""
    query = parse_query(OverdueQuery)
    children = ChildRepository(services().db).rescreens_due_before(
        services().clock.now(), query.limit, query.action.split(",")
    )
    return jsonify(children=_with_parent_phone(children))


@bp.get("/worker/stats")
@auth_required(*STAFF_ROLES)
@cached("staff", by_day=True)
def stats() -> ResponseReturnValue:
    """Children per latest risk level and overdue re-screens, cached briefly in Redis."""
    return jsonify(_stats())


def _stats() -> dict[str, Any]:
    ttl = current_app.config["SETTINGS"].stats_cache_s
    cached: dict[str, Any] | None = safe_cache_get("worker-stats") if ttl else None
    if cached is not None:
        return cached
    repo = ChildRepository(services().db)
    now = services().clock.now()
    figures = {
        "childrenByRisk": repo.count_by_risk(),
        "overdueRescreens": repo.count_due_before(now, ["routine", "rescreen_2_weeks"]),
        "generatedAt": now,
    }
    if ttl:
        safe_cache_set("worker-stats", figures, ttl)
    return figures
