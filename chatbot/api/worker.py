"""Health-worker and admin views: the month list, a child's history, contacts, the
monthly export, and the older JSON lists (children at risk, overdue re-screens, counts).

Every view is scoped by chatbot/chat/staff.py: a health worker sees the children of their
posyandu only (another's child is a 404), an admin every child and no phone number.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, stream_with_context
from flask.typing import ResponseReturnValue

from chatbot.api import parse_body, parse_query
from chatbot.api.auth import auth_required
from chatbot.api.children import public_child
from chatbot.api.schemas import DueQuery, ExportQuery, NewContact, OverdueQuery, RiskQuery
from chatbot.auth import STAFF_ROLES
from chatbot.chat.staff import Scope
from chatbot.db.children import ChildRepository
from chatbot.db.users import UserRepository
from chatbot.extensions import safe_cache_get, safe_cache_set
from chatbot.http_cache import cached
from chatbot.services import services

bp = Blueprint("worker", __name__)


def _with_parent_phone(children: list[dict[str, Any]], scope: Scope) -> list[dict[str, Any]]:
    """Add each parent's phone number for members of the posyandu (one query a page)."""
    if not scope.phones:
        return [public_child(c) for c in children]
    phones = UserRepository(services().db).phones_for([c["userId"] for c in children])
    return [{**public_child(c), "parentPhone": phones.get(c["userId"])} for c in children]


@bp.get("/worker/posyandu")
@auth_required(*STAFF_ROLES)
def my_posyandu() -> ResponseReturnValue:
    """The posyandu the signed-in health worker serves (an admin: all)."""
    return jsonify(posyandu=services().staff.posyandu_of(g.user))


@bp.get("/worker/due")
@auth_required(*STAFF_ROLES)
@cached("staff", by_day=True)
def due() -> ResponseReturnValue:
    """The month's children due, overdue, to re-screen and referred, by name."""
    query = parse_query(DueQuery)
    return jsonify(
        services().staff.month_list(
            g.user,
            month=query.month,
            posyandu=query.posyandu and query.posyandu.upper(),
            statuses=query.status.split(","),
            q=query.q,
            limit=query.limit,
            cursor=query.cursor,
        )
    )


@bp.get("/worker/children/<child_id>")
@auth_required(*STAFF_ROLES)
def child_history(child_id: str) -> ResponseReturnValue:
    """A child of the worker's posyandu: its screenings and contacts, newest first."""
    return jsonify(services().staff.child_history(g.user, child_id))


@bp.post("/worker/children/<child_id>/contacts")
@auth_required(*STAFF_ROLES)
def add_contact(child_id: str) -> ResponseReturnValue:
    """Record "contacted" or "referral visited", with a note."""
    body = parse_body(NewContact)
    contact = services().staff.add_contact(g.user, child_id, body.kind, body.note)
    return jsonify(contact=contact), 201


@bp.get("/worker/export.csv")
@auth_required(*STAFF_ROLES)
def export() -> ResponseReturnValue:
    """The month's screenings of a posyandu as CSV, streamed as the database cursor reads."""
    query = parse_query(ExportQuery)
    language = query.language or g.user.get("language") or "id"
    name, lines = services().staff.export_rows(
        g.user, query.month, query.posyandu and query.posyandu.upper(), language
    )
    response = Response(stream_with_context(lines), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/worker/children")
@auth_required(*STAFF_ROLES)
@cached("staff")
def at_risk() -> ResponseReturnValue:
    """Children whose latest screening is at one of the given risk levels."""
    query = parse_query(RiskQuery)
    scope = Scope.of(g.user)
    children = ChildRepository(services().db).at_risk(
        query.risk.split(","), query.limit + 1, query.cursor, scope.codes
    )
    page = children[: query.limit]
    next_cursor = page[-1]["id"] if len(children) > query.limit else None
    return jsonify(children=_with_parent_phone(page, scope), nextCursor=next_cursor)


@bp.get("/worker/rescreens/overdue")
@auth_required(*STAFF_ROLES)
@cached("staff", by_day=True)
def overdue() -> ResponseReturnValue:
    """Children whose next screening date has passed, most overdue first."""
    query = parse_query(OverdueQuery)
    scope = Scope.of(g.user)
    children = ChildRepository(services().db).rescreens_due_before(
        services().clock.now(), query.limit, query.action.split(","), scope.codes
    )
    return jsonify(children=_with_parent_phone(children, scope))


@bp.get("/worker/stats")
@auth_required(*STAFF_ROLES)
@cached("staff", by_day=True)
def stats() -> ResponseReturnValue:
    """Children per latest risk level and overdue re-screens, cached briefly in Redis."""
    return jsonify(_stats(Scope.of(g.user)))


def _stats(scope: Scope) -> dict[str, Any]:
    ttl = current_app.config["SETTINGS"].stats_cache_s
    key = "worker-stats:" + ("*" if scope.codes is None else ",".join(sorted(scope.codes)))
    cached: dict[str, Any] | None = safe_cache_get(key) if ttl else None
    if cached is not None:
        return cached
    repo = ChildRepository(services().db)
    now = services().clock.now()
    figures = {
        "childrenByRisk": repo.count_by_risk(scope.codes),
        "overdueRescreens": repo.count_due_before(
            now, ["routine", "rescreen_2_weeks"], scope.codes
        ),
        "generatedAt": now,
    }
    if ttl:
        safe_cache_set(key, figures, ttl)
    return figures
