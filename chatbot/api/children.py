"""A parent's children, a child's summary and one questionnaire's result."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify
from flask.typing import ResponseReturnValue

from chatbot.api import parse_body
from chatbot.api.auth import auth_required
from chatbot.api.schemas import CorrectChild
from chatbot.auth import STAFF_ROLES
from chatbot.chat.service import UNCHANGED
from chatbot.chat.staff import Scope
from chatbot.db.questionnaires import QuestionnaireRepository
from chatbot.errors import NotFoundError
from chatbot.http_cache import cached
from chatbot.services import services

bp = Blueprint("children", __name__)


def _summary_visible(child_id: str, staff: bool = True) -> dict[str, Any]:
    """A parent sees only their own children; a health worker those of their posyandu,
    an admin every child (`staff` False: the owner only)."""
    found = services().children.summary(child_id)
    if found is None:
        raise NotFoundError("No such child.")
    child, user = found["child"], g.user
    if child["userId"] == user["id"]:
        return found
    if staff and user["role"] in STAFF_ROLES and Scope.of(user).sees(child):
        return found
    raise NotFoundError("No such child.")


def public_child(child: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in child.items() if k not in ("userId", "createdAt")}


@bp.get("/children")
@auth_required()
@cached()
def list_children() -> ResponseReturnValue:
    children = services().children.list_for_user(g.user["id"])
    return jsonify(children=[public_child(c) for c in children])


@bp.get("/children/<child_id>")
@auth_required()
@cached()
def child_summary(child_id: str) -> ResponseReturnValue:
    """The child with its 5 latest results (Redis, else two indexed queries, no $lookup)."""
    found = _summary_visible(child_id)
    return jsonify(child=public_child(found["child"]), recentScreenings=found["recentScreenings"])


@bp.post("/children/<child_id>/archive")
@auth_required()
def archive_child(child_id: str) -> ResponseReturnValue:
    """Archive a child (e.g. added by mistake): gone from lists and screening, history kept."""
    child = _summary_visible(child_id, staff=False)["child"]  # the parent's own decision
    archived = services().chat.archive_child(child)
    if archived is None:  # children are archived, never deleted
        raise NotFoundError("No such child.")
    return jsonify(child=public_child(archived))


@bp.patch("/children/<child_id>")
@auth_required()
def correct_child(child_id: str) -> ResponseReturnValue:
    """Correct a child's birth date or gestation: the next screening and its reminder move."""
    body = parse_body(CorrectChild)
    child = _summary_visible(child_id, staff=False)["child"]
    weeks = body.gestationalWeeks if "gestationalWeeks" in body.model_fields_set else UNCHANGED
    corrected = services().chat.correct_child(child, body.birthDate, weeks)
    if corrected is None:
        raise NotFoundError("No such child.")
    return jsonify(child=public_child(corrected))


@bp.get("/questionnaires/<questionnaire_id>")
@auth_required()
@cached()
def questionnaire(questionnaire_id: str) -> ResponseReturnValue:
    found = QuestionnaireRepository(services().db).get(questionnaire_id)
    if found is not None:
        try:
            _summary_visible(found["childId"])  # ownership goes through the child
        except NotFoundError:
            found = None  # someone else's answers exactly like an unknown id
    if found is None:
        raise NotFoundError("No such questionnaire.")
    found.pop("userId", None)
    found.pop("referenceBirthDate", None)
    return jsonify(found)
