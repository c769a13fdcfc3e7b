"""Phone numbers in E.164, with Indonesian local forms normalised (0812… / 62812… -> +62812…)."""

from __future__ import annotations

import re

from chatbot.errors import InvalidPhoneError

__all__ = ["InvalidPhoneError", "mask_phone", "normalise_phone"]

_E164 = re.compile(r"^\+[1-9]\d{7,14}$")


def normalise_phone(raw: str) -> str:
    """Return the E.164 form of `raw` or raise InvalidPhoneError."""
    compact = re.sub(r"[\s().-]", "", raw or "")
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif compact.startswith("0"):
        compact = "+62" + compact[1:]
    elif compact.startswith("62"):
        compact = "+" + compact
    if not _E164.match(compact):
        raise InvalidPhoneError("not a phone number in E.164 or Indonesian local form")
    if compact.startswith("+62") and not 9 <= len(compact) - 3 <= 13:
        raise InvalidPhoneError("an Indonesian number has 9 to 13 digits after +62")
    return compact


def mask_phone(phone: str) -> str:
    """+6281234567890 -> +62812*****890, for logs."""
    return phone[:6] + "*" * max(len(phone) - 9, 0) + phone[-3:]
