"""No phone number or token in the stack's logs (issue 11, item 5).

Run last (tests/e2e/conftest.py), so it reads what the whole e2e run wrote: every app
instance's log and nginx's access log, from their first line. One-time codes appear
only in the development sender's line (`otp_code`), whose purpose is to show them
(production refuses that sender unless ALLOW_LOG_CODE_SENDER=1); its phone is masked.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.test_conversations import logged_code
from tests.harness import http
from tests.support import HttpChat

pytestmark = pytest.mark.e2e

# An Indonesian mobile number in any of its forms (+62 8…, 62 8…, 08…), not inside a
# longer word or number (request ids are hex, times and sizes have other shapes).
PHONE = re.compile(r"(?<![\w.:/-])(?:\+?62|0)8\d{7,12}(?!\d)")
# An itsdangerous token: base64 JSON ("eyJ") . timestamp . signature.
TOKEN = re.compile(r"eyJ[\w-]{8,}\.[\w-]{4,}\.[\w-]{16,}")
REQUEST_ID = re.compile(r"\b[0-9a-f]{32}\b")


def exercise(stack) -> list[str]:
    """Requests that carry phone numbers and tokens, so the scan has something to find."""
    chat = HttpChat(stack.url, "081900000901")
    chat.say("halo")
    start = http("POST", stack.url + "/api/v1/chat/start", {"phoneNumber": "6281900000901"})
    assert start.status == 202, start.body  # a known number: a code is sent (and logged)
    code = logged_code(stack, "+6281900000901")
    verified = http(
        "POST",
        stack.url + "/api/v1/chat/verify",
        {"challengeId": start.json()["challengeId"], "code": code},
    )
    assert verified.status == 200, verified.body
    tokens = [chat.token, verified.json()["token"]]
    # The verification rotated the first token: 401; the new one reads the history.
    for token, status in zip(tokens, (401, 200), strict=True):
        headers = {"Authorization": f"Bearer {token}"}
        assert http("GET", stack.url + "/api/v1/chat/messages", headers=headers).status == status
    bad = {"Authorization": f"Bearer {tokens[1]}x"}
    assert http("GET", stack.url + "/api/v1/chat/messages", headers=bad).status == 401
    http("POST", stack.url + "/api/v1/chat/start", {"phoneNumber": "08190000"})
    return tokens


def test_no_phone_number_or_token_in_any_log_line(stack):
    tokens = exercise(stack)
    found = []
    for service in (*stack.apps, stack.nginx):
        for number, line in enumerate(service.log_path.read_text(errors="replace").splitlines()):
            where = f"{service.log_path.name}:{number + 1}"
            scanned = REQUEST_ID.sub("", line)
            for match in PHONE.findall(scanned) + TOKEN.findall(scanned):
                found.append(f"{where}: {match!r} in {line[:300]}")
            found += [f"{where}: a token in {line[:300]}" for t in tokens if t in line]
            if "otp_code" in line:
                record = json.loads(line)
                if record.get("logger") != "chatbot.auth":
                    found.append(f"{where}: a code outside the code sender's line: {line[:300]}")
    assert not found, "\n".join(found[:20])
