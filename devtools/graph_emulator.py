"""A WhatsApp Cloud API (Graph API) emulator on loopback, for development and tests.

Meta's servers cannot be reached from here; this stands in for them, to Meta's documented
shapes (../shared/docs/whatsapp.md):

- `POST /{version}/{phone_number_id}/messages` with `Authorization: Bearer <token>`: the
  body's shape is checked (text at most 4,096 characters; reply buttons at most 3, titles
  at most 20; a list at most 10 rows, titles at most 24; a template must be one approved
  here: by default those of chatbot/data/whatsapp_templates.json, in --template-languages)
  and answered like Meta: `{"messaging_product": "whatsapp", "contacts": [...],
  "messages": [{"id": "wamid..."}]}`, or Meta's error body (`{"error": {"message",
  "type", "code", "error_subcode", "fbtrace_id"}}`). Every send is recorded.
- It posts **signed** webhooks (`X-Hub-Signature-256`, HMAC-SHA256 of the raw body with
  the app secret) to the webhook URL: a parent's message (`POST /_emulator/inbound`), and
  `sent`, `delivered`, `read` statuses of every message it accepted.
- It can be told to throttle (429, code 130429), fail (500, code 2), refuse (400, code
  131026, undeliverable) or hang for a while: `POST /_emulator/faults {"throttle_s": 30}`,
  `{"fail_s": 10}`, `{"refuse_s": 5}`, `{"hang_s": 5}`.
- `GET /_emulator/sent[?to=628...&after=N]`: what it received, in order (N: a count
  already seen); `DELETE /_emulator/sent` forgets it.

    python devtools/graph_emulator.py serve --port 8090 --webhook http://127.0.0.1:8080/webhooks/whatsapp
    python devtools/graph_emulator.py chat 6281234567890 --emulator http://127.0.0.1:8090

`chat` is a terminal WhatsApp: type a line, see the bot's replies and their buttons; a
number answers a button or list row by its position. Secrets: --app-secret and --token,
by default the app's development placeholders (chatbot/settings.py DEV_WHATSAPP).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import itertools
import json
import queue
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

DEV_APP_SECRET = "dev-whatsapp-app-secret"  # noqa: S105 -- the development placeholder
DEV_TOKEN = "dev-whatsapp-access-token"  # noqa: S105 -- the development placeholder
DEV_PHONE_NUMBER_ID = "100000000000001"
TEMPLATES_FILE = (
    Path(__file__).resolve().parent.parent / "chatbot" / "data" / "whatsapp_templates.json"
)


def approved_templates(languages: str, path: Path = TEMPLATES_FILE) -> dict[str, dict[str, Any]]:
    """The templates "approved at Meta" here: name -> its languages and parameter count."""
    data = json.loads(path.read_text(encoding="utf-8"))
    codes = {code.strip() for code in languages.split(",") if code.strip()}
    return {
        t["name"]: {"languages": codes & set(t["body"]), "parameters": len(t["parameters"])}
        for key, t in data.items()
        if not key.startswith("_")
    }


class Emulator:
    def __init__(
        self,
        webhook: str,
        app_secret: str,
        token: str,
        statuses: bool = True,
        templates: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.webhook = webhook
        self.templates = approved_templates("id,en") if templates is None else templates
        self.app_secret = app_secret
        self.token = token
        self.statuses = statuses
        self.sent: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.faults: dict[str, float] = {}  # kind -> until (monotonic)
        self.counter = itertools.count(1)
        self.outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.webhook_failures = 0
        # Sends answered 429 / 500 / 400 (131026) by a fault.
        self.refused = {"throttled": 0, "failed": 0, "refused": 0}
        threading.Thread(target=self._post_webhooks, daemon=True).start()

    # --- the Graph API ------------------------------------------------------------------
    def send(
        self, phone_number_id: str, auth: str | None, raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        if auth != f"Bearer {self.token}":
            return 401, error(
                190, "Invalid OAuth access token - Cannot parse access token", "OAuthException"
            )
        hang = self._fault("hang_s")
        if hang:
            time.sleep(hang)
        if self._fault("throttle_s"):
            self.refused["throttled"] += 1
            return 429, error(130429, "Rate limit hit", "OAuthException")
        if self._fault("fail_s"):
            self.refused["failed"] += 1
            return 500, error(2, "Service temporarily unavailable", "OAuthException")
        if self._fault("refuse_s"):
            self.refused["refused"] += 1
            return 400, error(131026, "Message undeliverable", "OAuthException")
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, error(100, "Invalid parameter: the body is not JSON")
        problem = check_message(body)
        if problem:
            return 400, error(100, f"Invalid parameter: {problem}")
        if body.get("type") == "template":
            refusal = self._check_template(body["template"])
            if refusal:
                return 400, refusal
        wamid = f"wamid.{secrets.token_hex(12)}"
        record = {
            "n": 0,
            "id": wamid,
            "phone_number_id": phone_number_id,
            "to": body["to"],
            "body": body,
            "at": time.time(),
        }
        with self.lock:
            record["n"] = len(self.sent) + 1
            self.sent.append(record)
        if self.statuses:
            for status in ("sent", "delivered", "read"):
                self.outbox.put(status_webhook(phone_number_id, wamid, body["to"], status))
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": wamid}],
        }

    def _check_template(self, template: dict[str, Any]) -> dict[str, Any] | None:
        """Meta's refusals of a template it has not approved, or given other parameters."""
        approved = self.templates.get(template["name"])
        language = template["language"]["code"]
        if approved is None or language not in approved["languages"]:
            return error(132001, f"(#132001) Template name does not exist in the translation"
                         f" ({template['name']}, {language})")  # fmt: skip
        params = [
            p
            for c in template.get("components") or []
            if c.get("type") == "body"
            for p in c.get("parameters") or []
        ]
        if len(params) != approved["parameters"] or any(
            p.get("type") != "text" or not p.get("text") or "\n" in p["text"] for p in params
        ):
            return error(132000, "(#132000) Number of parameters does not match the expected"
                         " number of params")  # fmt: skip
        return None

    def _fault(self, kind: str) -> float:
        until = self.faults.get(kind, 0.0)
        left = until - time.monotonic()
        return left if left > 0 else 0.0

    def set_faults(self, faults: dict[str, float]) -> None:
        for kind in ("throttle_s", "fail_s", "hang_s", "refuse_s"):
            if kind in faults:
                self.faults[kind] = time.monotonic() + float(faults[kind])

    # --- webhooks to the app ------------------------------------------------------------
    def inbound(
        self,
        sender: str,
        text: str | None = None,
        button: dict[str, str] | None = None,
        kind: str | None = None,
        phone_number_id: str = DEV_PHONE_NUMBER_ID,
        wamid: str | None = None,
    ) -> dict[str, Any]:
        """Post a parent's message to the app as Meta would; answer the webhook's reply."""
        message = message_of(sender, text, button, kind, wamid)
        payload = envelope(
            phone_number_id,
            {"contacts": [{"profile": {"name": "Parent"}, "wa_id": sender}], "messages": [message]},
        )
        status, reply = self.post(payload)
        return {"wamid": message["id"], "status": status, "reply": reply}

    def post(self, payload: dict[str, Any]) -> tuple[int, str]:
        raw = json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 -- the configured webhook URL
            self.webhook,
            data=raw,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(self.app_secret, raw),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- as above
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, type(exc).__name__

    def _post_webhooks(self) -> None:
        """Statuses go out one by one, as Meta sends them; a refused one is resent later."""
        while True:
            payload = self.outbox.get()
            if payload is None:
                return
            status, _ = self.post(payload)
            if status != 200:
                self.webhook_failures += 1
                time.sleep(0.5)
                self.outbox.put(payload)


def sign(secret: str, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def error(code: int, message: str, kind: str = "OAuthException") -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": kind,
            "code": code,
            "error_subcode": None,
            "fbtrace_id": secrets.token_hex(8),
        }
    }


def envelope(phone_number_id: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "100000000000000",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550000000",
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def message_of(
    sender: str,
    text: str | None,
    button: dict[str, str] | None,
    kind: str | None,
    wamid: str | None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "from": sender,
        "id": wamid or f"wamid.in{secrets.token_hex(12)}",
        "timestamp": str(int(time.time())),
    }
    if button is not None:
        reply_type = button.get("type", "button_reply")
        message |= {
            "type": "interactive",
            "interactive": {
                "type": reply_type,
                reply_type: {"id": button["id"], "title": button.get("title", button["id"])},
            },
        }
    elif kind is not None and kind != "text":
        message |= {"type": kind, kind: {"id": secrets.token_hex(8), "mime_type": "image/jpeg"}}
    else:
        message |= {"type": "text", "text": {"body": text or ""}}
    return message


def status_webhook(phone_number_id: str, wamid: str, to: str, status: str) -> dict[str, Any]:
    return envelope(
        phone_number_id,
        {
            "statuses": [
                {
                    "id": wamid,
                    "recipient_id": to,
                    "status": status,
                    "timestamp": str(int(time.time())),
                    "conversation": {"id": "c" + wamid[-8:], "origin": {"type": "service"}},
                    "pricing": {"billable": True, "pricing_model": "CBP", "category": "service"},
                }
            ]
        },
    )


def check_message(body: Any) -> str | None:
    """What is wrong with a send's body, as Meta would refuse it; None if nothing."""
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        return "messaging_product must be whatsapp"
    if not isinstance(body.get("to"), str) or not body["to"].isdigit():
        return "to must be a phone number"
    kind = body.get("type", "text")
    if kind == "text":
        text = (body.get("text") or {}).get("body")
        if not isinstance(text, str) or not text:
            return "text.body is required"
        if len(text) > 4096:
            return "text.body is longer than 4096 characters"
        return None
    if kind == "interactive":
        interactive = body.get("interactive") or {}
        text = (interactive.get("body") or {}).get("text")
        if not isinstance(text, str) or not text or len(text) > 1024:
            return "interactive.body.text must be 1 to 1024 characters"
        action = interactive.get("action") or {}
        if interactive.get("type") == "button":
            buttons = action.get("buttons") or []
            if not 1 <= len(buttons) <= 3:
                return "interactive buttons: 1 to 3"
            for b in buttons:
                title = (b.get("reply") or {}).get("title", "")
                if (
                    b.get("type") != "reply"
                    or not (b.get("reply") or {}).get("id")
                    or not 1 <= len(title) <= 20
                ):
                    return "a reply button needs an id and a title of 1 to 20 characters"
            return None
        if interactive.get("type") == "list":
            rows = [r for s in action.get("sections") or [] for r in s.get("rows") or []]
            if not action.get("button") or len(action["button"]) > 20:
                return "a list needs a button text of 1 to 20 characters"
            if not 1 <= len(rows) <= 10:
                return "a list has 1 to 10 rows"
            if any(not r.get("id") or not 1 <= len(r.get("title", "")) <= 24 for r in rows):
                return "a list row needs an id and a title of 1 to 24 characters"
            return None
        return "interactive.type must be button or list"
    if kind == "template":
        template = body.get("template") or {}
        if not template.get("name") or not (template.get("language") or {}).get("code"):
            return "template needs a name and a language code"
        return None
    return f"type {kind} is not supported here"


def make_handler(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            parts = path.strip("/").split("/")
            raw = self._body()
            if len(parts) == 3 and parts[2] == "messages":
                status, body = emulator.send(parts[1], self.headers.get("Authorization"), raw)
                self._answer(status, body)
            elif path == "/_emulator/faults":
                emulator.set_faults(json.loads(raw or b"{}"))
                self._answer(200, {"faults": list(emulator.faults)})
            elif path == "/_emulator/inbound":
                spec = json.loads(raw or b"{}")
                self._answer(
                    200,
                    emulator.inbound(
                        spec["from"],
                        spec.get("text"),
                        spec.get("button"),
                        spec.get("type"),
                        spec.get("phone_number_id", DEV_PHONE_NUMBER_ID),
                        spec.get("wamid"),
                    ),
                )
            elif path == "/_emulator/webhook":  # post this exact payload, signed
                status, reply = emulator.post(json.loads(raw))
                self._answer(200, {"status": status, "reply": reply})
            else:
                self._answer(404, error(100, f"Unknown path {path}"))

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path != "/_emulator/sent":
                self._answer(404, error(100, f"Unknown path {url.path}"))
                return
            query = parse_qs(url.query)
            after = int(query.get("after", ["0"])[0])
            to = query.get("to", [None])[0]
            with emulator.lock:
                found = [s for s in emulator.sent[after:] if to is None or s["to"] == to]
                total = len(emulator.sent)
            self._answer(
                200,
                {
                    "total": total,
                    "sent": found,
                    "refused": emulator.refused,
                    "webhookFailures": emulator.webhook_failures,
                },
            )

        def do_DELETE(self) -> None:
            with emulator.lock:
                emulator.sent.clear()
            self._answer(200, {"total": 0})

    return Handler


def serve(args: argparse.Namespace) -> None:
    emulator = Emulator(
        args.webhook, args.app_secret, args.token, statuses=not args.no_statuses,
        templates=approved_templates(args.template_languages),
    )  # fmt: skip
    server = ThreadingHTTPServer((args.host, args.port), make_handler(emulator))
    server.daemon_threads = True
    print(
        f"graph emulator on http://{args.host}:{server.server_port} -> webhooks to {args.webhook}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def chat(args: argparse.Namespace) -> None:
    """A terminal WhatsApp for one number: each line is a message; replies are printed."""
    base = args.emulator.rstrip("/")
    seen = call("GET", f"{base}/_emulator/sent")["total"]
    choices: list[str] = []
    print(f"chatting as +{args.phone} (Ctrl-D to stop; a number answers a button by its place)")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        spec: dict[str, Any] = {"from": args.phone, "text": line}
        if line.isdigit() and 1 <= int(line) <= len(choices):
            spec = {"from": args.phone, "button": {"id": choices[int(line) - 1]}}
        answer = call("POST", f"{base}/_emulator/inbound", spec)
        if answer["status"] != 200:
            print(f"  (the webhook answered {answer['status']}: {answer['reply']})")
            continue
        # The replies: until none came for 0.7 s after the first, or --wait passed.
        deadline, last = time.monotonic() + args.wait, None
        while time.monotonic() < deadline and (last is None or time.monotonic() - last < 0.7):
            found = call("GET", f"{base}/_emulator/sent?after={seen}")
            seen = found["total"]
            for sent in (s for s in found["sent"] if s["to"] == args.phone):
                choices = show(sent["body"]) or choices
                last = time.monotonic()
            time.sleep(0.1)
        if last is None:
            print("  (no reply yet; is the queue worker running?)")


def show(body: dict[str, Any]) -> list[str]:
    """Print one message as a phone would show it; answer its choices' ids."""
    if body["type"] == "text":
        print("bot> " + body["text"]["body"].replace("\n", "\n     "))
        return []
    if body["type"] == "template":
        template = body["template"]
        values = [p["text"] for c in template.get("components", []) for p in c["parameters"]]
        print(f"bot> [template {template['name']} ({template['language']['code']})] {values}")
        return []
    interactive = body["interactive"]
    print("bot> " + interactive["body"]["text"].replace("\n", "\n     "))
    if interactive["type"] == "button":
        buttons = [b["reply"] for b in interactive["action"]["buttons"]]
    else:
        buttons = [r for s in interactive["action"]["sections"] for r in s["rows"]]
    for n, b in enumerate(buttons, 1):
        print(f"     [{n}] {b['title']}")
    return [b["id"] for b in buttons]


def call(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 -- loopback
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 -- loopback
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the emulator")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8090)
    s.add_argument("--webhook", default="http://127.0.0.1:8080/webhooks/whatsapp")
    s.add_argument("--app-secret", default=DEV_APP_SECRET)
    s.add_argument("--token", default=DEV_TOKEN)
    s.add_argument("--no-statuses", action="store_true", help="post no status webhooks")
    s.add_argument("--template-languages", default="id,en",
                   help="the translations of the data file's templates approved here")  # fmt: skip
    c = sub.add_parser("chat", help="chat as a phone number from this terminal")
    c.add_argument("phone", help="the number in international form without +, e.g. 6281234567890")
    c.add_argument("--emulator", default="http://127.0.0.1:8090")
    c.add_argument("--wait", type=float, default=5.0, help="seconds to wait for replies")
    args = parser.parse_args()
    serve(args) if args.command == "serve" else chat(args)


if __name__ == "__main__":
    main()
