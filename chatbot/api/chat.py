"""The web chat: start, verify a phone, send messages, read history, confirm delivery."""

from __future__ import annotations

from flask import Blueprint, g, jsonify
from flask.typing import ResponseReturnValue

from chatbot import limits
from chatbot.api import parse_body, parse_query
from chatbot.api.auth import auth_required
from chatbot.api.schemas import HistoryQuery, Receipts, SendMessage, StartChat, VerifyChat
from chatbot.deadlines import own_deadline
from chatbot.http_cache import cached
from chatbot.services import services

bp = Blueprint("chat", __name__)
# Every chat route: CHAT_RATE_LIMIT per user (or address); /chat/verify its own, below.
limits.limit_blueprint(bp, "chat_rate_limit")


@bp.post("/chat/start")
def start() -> ResponseReturnValue:
    """Start a chat for a phone number: a token now, or a code challenge for a known number."""
    body = parse_body(StartChat)
    result = services().chat.start(body.phoneNumber, body.language)
    return jsonify(result), 202 if result["verificationRequired"] else 201


@bp.post("/chat/verify")
# VERIFY_RATE_LIMIT instead of the chat limit: tighter, each try guesses a code.
@limits.limit("verify_rate_limit")
def verify() -> ResponseReturnValue:
    """Exchange a one-time code for a token."""
    body = parse_body(VerifyChat)
    return jsonify(services().chat.verify(body.challengeId, body.code))


@bp.post("/chat/messages")
@own_deadline  # the turn's deadline starts once it holds the user's lock
@auth_required()
def send_message() -> ResponseReturnValue:
    """Send one message; the bot's replies come back in the response."""
    body = parse_body(SendMessage)
    result = services().chat.handle_message(g.user, body.text, body.clientMessageId)
    return jsonify(result), 200 if result["duplicate"] else 201


@bp.get("/chat/messages")
@auth_required()
@cached()
def history() -> ResponseReturnValue:
    """The user's messages, newest first, a page at a time."""
    query = parse_query(HistoryQuery)
    page, next_cursor = services().chat.history(g.user["id"], query.limit, query.cursor)
    return jsonify(messages=page, nextCursor=next_cursor)


@bp.post("/chat/receipts")
@auth_required()
def receipts() -> ResponseReturnValue:
    """The client showed these replies: sent -> delivered."""
    body = parse_body(Receipts)
    # A malformed id answers 404 (the repository parses every id before the update).
    count = services().chat.mark_delivered(g.user["id"], body.messageIds)
    return jsonify(delivered=count)
