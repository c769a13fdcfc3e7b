"""A parent's children, a child's summary and one questionnaire's result."""

from __future__ import annotations

from flask import Blueprint, g, jsonify
from flask.typing import ResponseReturnValue

from chatbot.auth import STAFF_ROLES, auth_required
from chatbot.chat.service import utcnow
from chatbot.db.children import ChildRepository
from chatbot.db.documents import NotFoundError
from chatbot.db.questionnaires import QuestionnaireRepository
from chatbot.extensions import mongo

bp = Blueprint("children", __name__)


def _child_visible(child_id: str) -> dict:
    """A parent sees only their own children; staff see every child."""
    repo = ChildRepository(mongo.db)
    if g.user["role"] in STAFF_ROLES:
        child = repo.get(child_id)
    else:
        child = repo.get_for_user(g.user["id"], child_id)
    if child is None:
        raise NotFoundError("No such child.")
    return child


def public_child(child: dict) -> dict:
    return {k: v for k, v in child.items() if k not in ("userId", "createdAt")}


@bp.get("/children")
@auth_required()
def list_children() -> ResponseReturnValue:
    children = ChildRepository(mongo.db).list_for_user(g.user["id"])
    return jsonify(children=[public_child(c) for c in children])


@bp.get("/children/<child_id>")
@auth_required()
def child_summary(child_id: str) -> ResponseReturnValue:
    """The child with its 5 latest results (two indexed queries, no $lookup)."""
    child = _child_visible(child_id)
    recent = QuestionnaireRepository(mongo.db).recent_for_child(child["id"], limit=5)
    return jsonify(child=public_child(child), recentScreenings=recent)


@bp.post("/children/<child_id>/archive")
@auth_required()
def archive_child(child_id: str) -> ResponseReturnValue:
    """Archive a child (e.g. added by mistake): gone from lists and screening, history kept."""
    child = _child_visible(child_id)
    repo = ChildRepository(mongo.db)
    repo.archive(child["id"], utcnow())
    return jsonify(child=public_child(repo.get(child["id"])))


@bp.get("/questionnaires/<questionnaire_id>")
@auth_required()
def questionnaire(questionnaire_id: str) -> ResponseReturnValue:
    found = QuestionnaireRepository(mongo.db).get(questionnaire_id)
    if found is None:
        raise NotFoundError("No such questionnaire.")
    _child_visible(found["childId"])  # ownership goes through the child
    found.pop("userId", None)
    found.pop("referenceBirthDate", None)
    return jsonify(found)
