"""The WhatsApp Cloud API's shapes, read and written; nothing here does I/O.

- `verify_signature`: `X-Hub-Signature-256` is `sha256=` + the hex HMAC-SHA256 of the raw
  body with the app secret, compared in constant time (as RapidPro's courier does).
- `parse_webhook`: Meta's envelope (`object`, `entry[].changes[].value`) into the inbound
  messages, statuses and errors it carries, or `MalformedWebhookError` for anything else.
- `render_replies`: the chat turn's replies as Graph API message bodies: text (split at
  WhatsApp's 4,096 characters), and for numbered choices reply buttons (at most 3, titles
  at most 20 characters) or a list (at most 10 rows, titles at most 24), so a parent taps
  instead of typing a number.

Shapes: ../shared/docs/whatsapp.md (Meta's published ones, as courier's test data has them).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SIGNATURE_PREFIX = "sha256="
TEXT_LIMIT = 4096
MAX_BUTTONS = 3
BUTTON_TITLE_LIMIT = 20
MAX_ROWS = 10
ROW_TITLE_LIMIT = 24
ROW_DESCRIPTION_LIMIT = 72
LIST_BUTTON_LIMIT = 20
# Message types whose content is text the conversation understands.
UNDERSTOOD = ("text", "interactive", "button")
STATUS_ORDER = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}


class MalformedWebhookError(ValueError):
    """A signed body that is not a WhatsApp webhook this service knows."""


def sign(secret: str, body: bytes) -> str:
    """The header value Meta sends for `body` (also what the emulator signs with)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    if not secret or not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(sign(secret, body), header)


@dataclass(frozen=True)
class Inbound:
    """One message a parent sent. `text` is None for a type the conversation cannot read."""

    wamid: str
    wa_id: str  # the sender's number in international form, without "+"
    phone_number_id: str  # which of our numbers it reached
    timestamp: datetime
    type: str
    text: str | None
    name: str | None = None  # the WhatsApp profile name, when Meta sends it


@dataclass(frozen=True)
class Status:
    """What Meta says became of a message we sent."""

    wamid: str
    recipient: str
    status: str  # sent | delivered | read | failed
    timestamp: datetime
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Webhook:
    messages: list[Inbound] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def parse_webhook(payload: Any) -> Webhook:
    """What a webhook body carries; MalformedWebhookError unless it is Meta's shape throughout."""
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        raise MalformedWebhookError("not a whatsapp_business_account webhook")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise MalformedWebhookError("entry is not a list")
    out = Webhook()
    for entry in entries:
        changes = _dict(entry, "entry").get("changes")
        if not isinstance(changes, list):
            raise MalformedWebhookError("entry.changes is not a list")
        for change in changes:
            change = _dict(change, "change")
            if change.get("field") != "messages":
                continue  # account updates and the like: nothing for the conversation
            _value(_dict(change.get("value"), "change.value"), out)
    return out


def _value(value: dict[str, Any], out: Webhook) -> None:
    metadata = _dict(value.get("metadata"), "metadata")
    number_id = _str(metadata.get("phone_number_id"), "metadata.phone_number_id")
    names = {}
    for contact in _list(value.get("contacts", []), "contacts"):
        contact = _dict(contact, "contact")
        profile = contact.get("profile")
        if isinstance(profile, dict) and isinstance(profile.get("name"), str):
            names[contact.get("wa_id")] = profile["name"]
    for message in _list(value.get("messages", []), "messages"):
        out.messages.append(_inbound(_dict(message, "message"), number_id, names))
    for status in _list(value.get("statuses", []), "statuses"):
        status = _dict(status, "status")
        state = _str(status.get("status"), "status.status")
        if state not in STATUS_ORDER:
            raise MalformedWebhookError(f"unknown status {state!r}")
        out.statuses.append(
            Status(
                wamid=_str(status.get("id"), "status.id"),
                recipient=_str(status.get("recipient_id"), "status.recipient_id"),
                status=state,
                timestamp=_time(status.get("timestamp")),
                errors=[
                    e for e in _list(status.get("errors", []), "errors") if isinstance(e, dict)
                ],
            )
        )
    out.errors.extend(e for e in _list(value.get("errors", []), "errors") if isinstance(e, dict))


def _inbound(message: dict[str, Any], number_id: str, names: dict[Any, str]) -> Inbound:
    sender = _str(message.get("from"), "message.from")
    if not sender.isdigit():
        raise MalformedWebhookError("message.from is not a number")
    kind = _str(message.get("type"), "message.type")
    text: str | None = None
    if kind == "text":
        text = _str(_dict(message.get("text"), "text").get("body"), "text.body")
    elif kind == "interactive":
        interactive = _dict(message.get("interactive"), "interactive")
        reply_type = interactive.get("type")
        if reply_type in ("button_reply", "list_reply"):
            reply = _dict(interactive.get(reply_type), reply_type)
            # Our ids are the choices' values: what a parent would have typed.
            text = _str(reply.get("id"), f"{reply_type}.id")
    elif kind == "button":  # a template's quick reply
        button = _dict(message.get("button"), "button")
        text = _str(button.get("payload") or button.get("text"), "button.payload")
    return Inbound(
        wamid=_str(message.get("id"), "message.id"),
        wa_id=sender,
        phone_number_id=number_id,
        timestamp=_time(message.get("timestamp")),
        type=kind,
        text=text,
        name=names.get(sender),
    )


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedWebhookError(f"{what} is not an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedWebhookError(f"{what} is not a list")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedWebhookError(f"{what} is missing")
    return value


def _time(value: Any) -> datetime:
    """Meta's timestamps: Unix seconds, as a string."""
    if not isinstance(value, str) or not value.isdigit():
        raise MalformedWebhookError("timestamp is not Unix seconds")
    return datetime.fromtimestamp(int(value), UTC)


# --- sending ---------------------------------------------------------------------------
def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at a line break or a space
    where there is one in the second half of the piece."""
    pieces = []
    while len(text) > limit:
        cut = max(text.rfind("\n", limit // 2, limit), text.rfind(" ", limit // 2, limit))
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    pieces.append(text)
    return pieces


def render_reply(
    to: str, text: str, choices: list[dict[str, str]], list_words: tuple[str, str]
) -> list[dict[str, Any]]:
    """One reply of the conversation as Graph API message bodies (usually one).

    `choices` are the reply's quick replies ({label, value}); a parent's tap answers with
    the value, as if typed. Beyond 10 choices the text (which numbers them) goes alone.
    `list_words` are the list's button and section title, in the parent's language.
    """
    pieces = split_text(text)
    head, last = pieces[:-1], pieces[-1]
    bodies = [_text(to, piece) for piece in head]
    if not choices or len(choices) > MAX_ROWS or len(last) > 1024:
        # Interactive bodies take at most 1,024 characters: longer ones go as text.
        bodies.append(_text(to, last))
    elif len(choices) <= MAX_BUTTONS and all(
        len(c["label"]) <= BUTTON_TITLE_LIMIT for c in choices
    ):
        buttons = [
            {"type": "reply", "reply": {"id": c["value"], "title": c["label"]}} for c in choices
        ]
        bodies.append(
            _interactive(
                to, {"type": "button", "body": {"text": last}, "action": {"buttons": buttons}}
            )
        )
    else:
        rows = [
            {"id": c["value"], "title": _cut(c["label"], ROW_TITLE_LIMIT)}
            | ({"description": _cut(c["label"], ROW_DESCRIPTION_LIMIT)}
               if len(c["label"]) > ROW_TITLE_LIMIT else {})
            for c in choices
        ]  # fmt: skip
        button, section = list_words
        action = {
            "button": _cut(button, LIST_BUTTON_LIMIT),
            "sections": [{"title": section, "rows": rows}],
        }
        bodies.append(_interactive(to, {"type": "list", "body": {"text": last}, "action": action}))
    return bodies


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(to: str, body: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"body": body, "preview_url": False},
    }


def _interactive(to: str, interactive: dict[str, Any]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "interactive",
        "interactive": interactive,
    }
