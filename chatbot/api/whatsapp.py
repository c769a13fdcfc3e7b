"""The WhatsApp Cloud API webhook: `/webhooks/whatsapp` (docs/whatsapp.md).

- GET: Meta's verification: `hub.mode=subscribe` and `hub.verify_token` equal to
  WHATSAPP_VERIFY_TOKEN -> 200 with `hub.challenge` as plain text; anything else 403.
- POST: `X-Hub-Signature-256` checked on the raw body first (401, nothing stored);
  bodies over 1 MiB 413; a signed body that is not JSON or not Meta's shape is logged,
  counted and answered 200 (Meta would otherwise resend it for days). Otherwise what
  it carries is recorded in MongoDB (chatbot/chat/whatsapp.py `accept`) and only then
  answered 200; the turns run in the queue workers (chatbot/tasks.py).
The channel off (WHATSAPP_ENABLED=0): 404, as for any unknown path.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from chatbot import limits
from chatbot.api import load_json
from chatbot.channels.whatsapp import MalformedWebhookError, parse_webhook, verify_signature
from chatbot.errors import ForbiddenError, InvalidInputError, NotFoundError, UnauthorizedError
from chatbot.metrics import count_whatsapp_webhook
from chatbot.services import services

log = logging.getLogger(__name__)

bp = Blueprint("whatsapp", __name__)
# Meta's servers post from a handful of addresses at any rate; the signature is the
# authentication, and overload is refused by admission control (nginx's max_conns).
limits.exempt(bp)

MAX_BODY = 1024 * 1024  # what courier reads at most, and what nginx lets through here


@bp.before_request
def _enabled() -> None:
    if not current_app.config["SETTINGS"].whatsapp_enabled:
        raise NotFoundError("Not found.")


@bp.get("/webhooks/whatsapp")
def verify() -> ResponseReturnValue:
    settings = current_app.config["SETTINGS"]
    args = request.args
    if args.get("hub.mode") != "subscribe" or not _same(
        args.get("hub.verify_token", ""), settings.whatsapp_verify_token
    ):
        raise ForbiddenError("The verify token does not match.")
    return Response(args.get("hub.challenge", ""), mimetype="text/plain")


@bp.post("/webhooks/whatsapp")
def receive() -> ResponseReturnValue:
    settings = current_app.config["SETTINGS"]
    request.max_content_length = MAX_BODY  # this route's limit, not the API's 64 KiB
    raw = request.get_data(cache=True)  # 413 past MAX_BODY, before anything is read
    if not verify_signature(
        settings.whatsapp_app_secret, raw, request.headers.get("X-Hub-Signature-256")
    ):
        count_whatsapp_webhook("bad_signature")
        raise UnauthorizedError("The X-Hub-Signature-256 signature does not match the body.")
    try:
        webhook = parse_webhook(load_json(raw))
    except (InvalidInputError, MalformedWebhookError) as exc:
        count_whatsapp_webhook("malformed")
        log.warning("whatsapp webhook ignored: %s", exc)
        return jsonify(status="ignored", reason=str(exc))
    report = services().whatsapp.accept(webhook)  # durable before the 200
    count_whatsapp_webhook("accepted" if webhook.messages or webhook.statuses else "empty")
    if report.duplicates:
        count_whatsapp_webhook("duplicate", report.duplicates)
    services().queue_turns(report.senders)
    return jsonify(status="accepted", messages=len(webhook.messages), statuses=report.statuses)


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
