"""Identity without the web: bearer tokens, one-time codes for phone numbers, code senders.

A token names a user and that user's current `tokenVersion`; verifying a phone
number with a one-time code rotates the version, so tokens issued earlier (for
example to someone who typed another person's number first) stop working.

The request side (the bearer token of a request, `auth_required`) is chatbot/api/auth.py.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import logging
import secrets
from typing import Any, Protocol

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from chatbot.errors import UnauthorizedError
from chatbot.phone import mask_phone

log = logging.getLogger(__name__)

# The roles that see every child and the staff lists.
STAFF_ROLES = ("health_worker", "admin")


class CodeSender(Protocol):
    """Delivers a one-time code to a phone (SMS, WhatsApp, ...)."""

    def send(self, phone: str, code: str, language: str) -> None: ...


class LogCodeSender:
    """Development sender: writes the code to the log instead of sending it.

    The code is the one secret a log line may carry, here only, because showing it is
    this sender's whole purpose (production refuses it unless ALLOW_LOG_CODE_SENDER=1);
    the phone number is masked like everywhere else.
    """

    def send(self, phone: str, code: str, language: str) -> None:
        masked = mask_phone(phone)
        log.warning(
            "one-time code for %s: %s",
            masked,
            code,
            extra={"otp_code": code, "phone": masked},
        )


def load_sender(path: str) -> CodeSender:
    """Import `module:Class` (or module.Class) and instantiate it."""
    module, _, name = path.replace(":", ".").rpartition(".")
    sender: CodeSender = getattr(importlib.import_module(module), name)()
    return sender


class Tokens:
    def __init__(self, secret_key: str, max_age_s: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="chatbot.bearer")
        self.max_age_s = max_age_s

    def issue(self, user: dict[str, Any]) -> str:
        return self._serializer.dumps({"uid": user["id"], "v": user["tokenVersion"]})

    def read(self, token: str) -> tuple[str, str]:
        """Return (user id, token version) or raise UnauthorizedError."""
        try:
            data = self._serializer.loads(token, max_age=self.max_age_s)
        except SignatureExpired:
            raise UnauthorizedError("The token has expired; start the chat again.") from None
        except BadSignature:
            raise UnauthorizedError("The token is not valid.") from None
        return data["uid"], data["v"]


def hash_code(secret_key: str, challenge_id: str, code: str) -> str:
    return hmac.new(
        secret_key.encode(), f"{challenge_id}:{code}".encode(), hashlib.sha256
    ).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"
