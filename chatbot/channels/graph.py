"""The Graph API's send call, and what its answers mean for a queue.

`GraphClient.send(body)` posts one message to `{base}/{version}/{phone_number_id}/messages`
with `Authorization: Bearer <access token>` and sorts Meta's answer into what the outbox
does next (courier's handlers/meta do the same):
- `Accepted(wamid)`: keep the id, so status webhooks find the reply;
- `Retry(reason)`: not sent; try again later with backoff: HTTP 429, Meta's throttling
  codes (4, 80007, 130429, 131048, 131056), any 5xx, or no connection at all (refused,
  or not made within the time-out: the request never left);
- `Unconfirmed`: the request left and no answer came (read time-out, connection reset):
  Meta may have sent it. Never retried, so a reply goes out at most once;
- `Refused(code, title)`: not sent, and never will be: mark the reply failed. 131047 is
  the 24-hour window closing (a template would be needed).
The token is never logged: only the status, Meta's code and title.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import urllib3

THROTTLED = {4, 80007, 130429, 131048, 131056}
OUTSIDE_WINDOW = 131047


@dataclass(frozen=True)
class Accepted:
    wamid: str


@dataclass(frozen=True)
class Retry:
    reason: str  # "throttled:<code>", "http_5xx", "unreachable"
    throttled: bool


@dataclass(frozen=True)
class Refused:
    code: int | None
    title: str
    outside_window: bool = False


@dataclass(frozen=True)
class Unconfirmed:
    reason: str


Result = Accepted | Retry | Refused | Unconfirmed


class GraphClient:
    def __init__(
        self,
        base_url: str,
        version: str,
        phone_number_id: str,
        access_token: str,
        timeout_s: float,
        pool_size: int = 16,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/{version}/{phone_number_id}/messages"
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json",
        }
        # No retries here: the outbox decides (a retried POST could send twice).
        self._http = urllib3.PoolManager(
            maxsize=pool_size, retries=False, timeout=urllib3.Timeout(total=timeout_s)
        )

    def send(self, body: dict[str, Any]) -> Result:
        try:
            response = self._http.request(
                "POST", self.url, body=json.dumps(body).encode(), headers=self._headers
            )
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError):
            return Retry("unreachable", throttled=False)
        except urllib3.exceptions.HTTPError as exc:
            return Unconfirmed(type(exc).__name__)
        return interpret(response.status, response.data)

    def close(self) -> None:
        self._http.clear()


def interpret(status: int, raw: bytes) -> Result:
    """What an answer of the Graph API means (tested on Meta's documented bodies)."""
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if 200 <= status < 300:
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            wamid = messages[0].get("id")
            if isinstance(wamid, str) and wamid:
                return Accepted(wamid)
        return Refused(None, "accepted without a message id")
    found = body.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    title = str(error.get("error_user_title") or error.get("message") or f"HTTP {status}")
    if status == 429 or code in THROTTLED:
        return Retry(f"throttled:{code or status}", throttled=True)
    if status >= 500:
        return Retry("http_5xx", throttled=False)
    return Refused(code, title[:200], outside_window=code == OUTSIDE_WINDOW)
