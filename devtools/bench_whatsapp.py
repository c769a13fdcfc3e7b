"""The WhatsApp section of `make bench` (devtools/bench.py runs it last).

Meta's side is the Graph API emulator (devtools/graph_emulator.py); the service's side is the
benchmark's stack (nginx, two instances) plus two queue worker processes, as `make run` has.

- **Load**: signed webhooks of Meta's shape (one text message each, "1": an answer turn),
  open loop through nginx with vegeta, from the benchmark's 100 users on their numbers (the
  same users as on the web: one conversation, two channels), at rising rates (50, 100,
  200, 400/s ...) until a rate is not acknowledged without error or its work does not drain.
  One in `REDELIVER_EVERY` is a byte-identical copy of that user's previous webhook, as
  Meta redelivers one it thinks failed.
- **Per rate**: the webhook's acknowledgement p50/p99 (from each request's intended send
  time), errors by status; inbound-to-send p50/p99: from a message's intended send to the
  emulator receiving its turn's first reply, and its last; sends per second against the
  configured limit (per calendar second, what the limiter counts, and in any sliding
  second); the queue's depth over time (inbox, outbox, dramatiq's queue), sampled every
  half second until the work drained.
- **After the run**: every acknowledged message stored once, processed once and answered;
  every reply sent once (the emulator's record of each send, mapped to our reply through
  `whatsapp_sent`); each user's replies in the order of their messages.

The emulator posts no status webhooks here (`--no-statuses`): the load is the parents'
messages, and statuses would be a second, uncontrolled webhook stream through the same nginx.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import GraphEmulator, QueueWorker

PHONE_NUMBER_ID = "100000000000077"
APP_SECRET = "bench-whatsapp-app-secret"  # noqa: S105 -- a benchmark's own, on loopback
ACCESS_TOKEN = "bench-whatsapp-access-token"  # noqa: S105 -- as above
VERIFY_TOKEN = "bench-whatsapp-verify-token"  # noqa: S105 -- as above
# The send limit configured for this run (WHATSAPP_RATE_PER_S). Meta's default throughput
# is 80 messages/s per number and rises to 1,000/s for numbers with the higher tier; at
# 80/s a load of 100 messages/s (about one reply each) could not be kept up with at all.
RATE_PER_S = 250
QUEUE_WORKERS = 2  # WHATSAPP_WORKERS' default
REDELIVER_EVERY = 10  # 10 % of the webhooks are redelivered copies
DRAIN_S = 90.0  # a rate whose work is not done this long after its load has broken
FINAL_DRAIN_S = 300.0  # after the last rate: until then, what is not answered is lost
SAMPLE_S = 0.5
ACK_GOAL_RATE, ACK_P99_MS = 200, 50
SEND_GOAL_RATE, SEND_P99_MS = 100, 1000
REFUSED_P99_MS = 100


def app_env(graph_url: str) -> dict[str, str]:
    """What the instances and the workers need for the channel (production mode)."""
    return {
        "WHATSAPP_ENABLED": "1",
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
        "WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "WHATSAPP_API_BASE_URL": graph_url,
        "WHATSAPP_RATE_PER_S": str(RATE_PER_S),
    }


def sign(raw: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()


def webhook(wa_id: str, wamid: str, text: str, sent_at: float) -> dict[str, Any]:
    """One inbound text message in Meta's envelope."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "100000000000000", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000077", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Parent"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": wamid, "timestamp": str(int(sent_at)),
                          "type": "text", "text": {"body": text}}],
        }}]}],
    }  # fmt: skip


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def rnd(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class Targets:
    """Signed webhooks round-robin over the users; every REDELIVER_EVERY-th repeats the
    same user's previous one byte for byte (same message id, same signature)."""

    def __init__(self, url: str, wa_ids: list[str]) -> None:
        self.url = url
        self.wa_ids = wa_ids
        self.batches = 0
        self.seconds: dict[str, int] = {}  # wamid -> Meta's timestamp

    def make(
        self, count: int, rate: float
    ) -> tuple[list[dict[str, Any]], list[tuple[str, str, bool]]]:
        """vegeta's targets, and per target (wamid, wa_id, is a redelivery); `seconds`
        keeps each message's Meta timestamp. Meta's
        timestamp (whole seconds) is when the parent sent it: the target's send time."""
        import base64

        self.batches += 1
        lines: list[dict[str, Any]] = []
        meta: list[tuple[str, str, bool]] = []
        users = len(self.wa_ids)
        start = time.time() + 0.2  # the attack starts right after the targets are written
        for i in range(count):
            earlier = i - users
            if i % REDELIVER_EVERY == REDELIVER_EVERY - 1 and earlier >= 0:
                lines.append(lines[earlier])
                meta.append((meta[earlier][0], meta[earlier][1], True))
                continue
            wa_id = self.wa_ids[i % users]
            wamid = f"wamid.bench{self.batches}x{i}"
            self.seconds[wamid] = int(start + i / rate)
            raw = json.dumps(webhook(wa_id, wamid, "1", start + i / rate)).encode()
            lines.append({
                "method": "POST", "url": self.url, "body": base64.b64encode(raw).decode(),
                "header": {"Content-Type": ["application/json"],
                           "X-Hub-Signature-256": [sign(raw)]},
            })  # fmt: skip
            meta.append((wamid, wa_id, False))
        return lines, meta


class DepthSampler:
    """The queue's depth every SAMPLE_S: MongoDB's inbox and outbox (the truth) and
    dramatiq's queue in Redis (tasks waiting, delayed)."""

    def __init__(self, db: Any, redis_client: Any, namespace: str) -> None:
        self.db = db
        self.redis = redis_client
        self.namespace = namespace
        self.series: list[tuple[float, int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def depth(self) -> tuple[int, int, int]:
        inbox = self.db["whatsapp_inbound"].count_documents({})
        outbox = self.db["whatsapp_outbox"].count_documents({})
        queued = int(self.redis.llen(f"{self.namespace}:whatsapp") or 0) + int(
            self.redis.llen(f"{self.namespace}:whatsapp.DQ") or 0
        )
        return inbox, outbox, queued

    def _run(self) -> None:
        while not self._stop.is_set():
            inbox, outbox, queued = self.depth()
            self.series.append((round(time.monotonic() - self.started, 2), inbox, outbox, queued))
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> DepthSampler:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def drained(self, timeout: float) -> bool:
        """True once inbox and outbox are empty (the work of every message done)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            inbox, outbox, _ = self.depth()
            if inbox == 0 and outbox == 0:
                return True
            time.sleep(0.25)
        return False


def max_per_second(times: list[float]) -> tuple[int, int]:
    """The most sends in one calendar second, and in any sliding second."""
    if not times:
        return 0, 0
    aligned = max(Counter(int(t) for t in times).values())
    ordered = sorted(times)
    sliding, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - 1.0:
            lo += 1
        sliding = max(sliding, hi - lo + 1)
    return aligned, sliding


class WhatsAppBench:
    def __init__(
        self,
        stack: Any,  # devtools/bench.py's Stack (graph emulator and env made by it)
        vegeta: Any,
        workdir: Path,
        db: Any,
        wa_ids: list[str],
        print_step: Callable[[Any], None],
        rates: list[int],
        seconds: float,
        max_rate: int,
    ) -> None:
        self.stack = stack
        self.vegeta = vegeta
        self.workdir = workdir
        self.db = db
        self.wa_ids = wa_ids
        self.print_step = print_step
        self.rates = rates
        self.seconds = seconds
        self.max_rate = max_rate
        self.graph: GraphEmulator = stack.graph
        self.workers: list[QueueWorker] = []
        self.seen = 0  # emulator sends already read

    # --- the emulator ----------------------------------------------------------------------
    def sent_since(self) -> list[dict[str, Any]]:
        url = f"{self.graph.url}/_emulator/sent?after={self.seen}"
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 -- loopback
            found = json.loads(response.read())
        self.seen = found["total"]
        return found["sent"]

    # --- the run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        import redis

        env = {**self.stack.app_env(), "LOG_LEVEL": "WARNING"}
        self.workers = [
            QueueWorker(self.workdir / f"queue-worker-{n}", str(n), env)
            for n in range(1, QUEUE_WORKERS + 1)
        ]
        for worker in self.workers:
            worker.start()
        client = redis.Redis.from_url(self.stack.redis.url)
        namespace = "chatbot:dramatiq"  # REDIS_KEY_PREFIX's default + dramatiq
        targets = Targets(self.stack.url + "/webhooks/whatsapp", self.wa_ids)
        steps: list[dict[str, Any]] = []
        all_accepted: dict[str, str] = {}  # wamid -> wa_id, first occurrences acknowledged
        all_sent: list[dict[str, Any]] = []
        intended: dict[str, float] = {}
        order: dict[str, list[str]] = defaultdict(list)  # wa_id -> its wamids, in send order
        try:
            print(
                f"\nwhatsapp: signed webhooks through nginx, {len(self.wa_ids)} users,"
                f" {self.seconds:g} s per rate, 1 in {REDELIVER_EVERY} redelivered;"
                f" {QUEUE_WORKERS} queue workers, send limit {RATE_PER_S}/s",
                flush=True,
            )
            warm_lines, _ = targets.make(40, 20)
            self.vegeta.attack("whatsapp warm-up", warm_lines, 20, 2)
            sampler = DepthSampler(self.db, client, namespace)
            if not sampler.drained(DRAIN_S):
                raise RuntimeError("the warm-up's WhatsApp work never drained")
            self.sent_since()
            queue = list(self.rates)
            while queue:
                rate = queue.pop(0)
                lines, meta = targets.make(int(rate * self.seconds) + rate, rate)
                with DepthSampler(self.db, client, namespace) as sampler:
                    step = self.vegeta.attack("whatsapp webhook", lines, rate, self.seconds,
                                              keep_rows=True)  # fmt: skip
                    load_s = time.monotonic() - sampler.started
                    drained = sampler.drained(DRAIN_S)
                    drain_s = time.monotonic() - sampler.started - load_s
                sent = self.sent_since()
                all_sent += sent
                accepted = {}
                for seq, at, code in sorted(step.rows):
                    if seq >= len(meta):
                        continue
                    wamid, wa_id, copy = meta[seq]
                    if code == 200 and not copy and wamid not in accepted:
                        accepted[wamid] = wa_id
                        intended[wamid] = at
                        order[wa_id].append(wamid)
                all_accepted |= accepted
                latency = self.latencies(accepted, intended, sent)
                aligned, sliding = max_per_second([s["at"] for s in sent])
                row = {
                    "offered": rate,
                    "sent": step.sent,
                    "achieved": round(step.achieved, 1),
                    "ack_p50_ms": rnd(step.p(50)),
                    "ack_p99_ms": rnd(step.p(99)),
                    "codes": {str(k): v for k, v in sorted(step.codes.items())},
                    "transport_errors": dict(step.transport),
                    "refused": step.refused,
                    "refused_p99_ms": rnd(step.p(99, step.refused_ms)),
                    "redeliveries": sum(1 for _, _, c in meta[: step.sent] if c),
                    "messages": len(accepted),
                    "replies_sent": len(sent),
                    **latency,
                    "sends_per_s_max_calendar_second": aligned,
                    "sends_per_s_max_sliding_second": sliding,
                    "send_limit_per_s": RATE_PER_S,
                    "load_s": round(load_s, 1),
                    "drained": drained,
                    "drain_s": round(drain_s, 1),
                    "depth_max": max((s[1] + s[2] for s in sampler.series), default=0),
                    "depth_series": sampler.series,
                    "clean": step.clean and drained,
                }
                steps.append(row)
                self.print_step(step)
                print(
                    f"    {len(accepted)} messages, {len(sent)} replies sent;"
                    f" inbound-to-send p50 {fmt(row['first_p50_ms'])} p99"
                    f" {fmt(row['first_p99_ms'])} ms (whole answer p99 {fmt(row['last_p99_ms'])});"
                    f" sends/s max {aligned} (sliding {sliding}) of {RATE_PER_S};"
                    f" depth max {row['depth_max']};"
                    f" {'drained' if drained else 'NOT drained'}"
                    f" {row['drain_s']:.1f} s after the load",
                    flush=True,
                )
                if not row["clean"]:
                    break
                if not queue and rate * 2 <= self.max_rate:
                    queue.append(rate * 2)
                time.sleep(1)
            # Every acknowledged message must be answered: wait for the backlog of the last
            # rate (it broke) before counting what was lost.
            started = time.monotonic()
            final = DepthSampler(self.db, client, namespace)
            drained_at_end = final.drained(FINAL_DRAIN_S)
            final_drain_s = time.monotonic() - started
            all_sent += self.sent_since()
            integrity = self.integrity(all_accepted, all_sent, order, targets.seconds)
            integrity["drained_at_end"] = drained_at_end
            integrity["final_drain_s"] = round(final_drain_s, 1)
            integrity["left_at_end"] = sum(final.depth()[:2])
        finally:
            client.close()
            for worker in self.workers:
                worker.stop()
        print(
            f"  after the run: {integrity['accepted']} acknowledged messages: lost"
            f" {integrity['lost']}, processed twice {integrity['processed_twice']}, stored"
            f" twice {integrity['stored_twice']}, sent twice {integrity['sent_twice']},"
            f" sends not recorded {integrity['sent_unrecorded']}, order broken"
            f" {integrity['order_broken']} (users; swapped within one second of Meta's"
            f" timestamp {integrity['order_swapped_within_a_second']}); the last backlog"
            f" {'drained' if integrity['drained_at_end'] else 'NOT drained'} in"
            f" {integrity['final_drain_s']:.0f} s",
            flush=True,
        )
        return {
            "steps": steps,
            "integrity": integrity,
            "send_limit_per_s": RATE_PER_S,
            "queue_workers": QUEUE_WORKERS,
            "redeliver_every": REDELIVER_EVERY,
        }

    # --- measurements ----------------------------------------------------------------------
    def replies_of(self, wamids: list[str]) -> dict[str, dict[str, Any]]:
        """turn -> its inbound documents and its replies (id, createdAt), from MongoDB."""
        found: dict[str, dict[str, Any]] = defaultdict(lambda: {"inbound": 0, "replies": []})
        turns = ["wa:" + w for w in wamids]
        for i in range(0, len(turns), 2000):
            for doc in self.db["messages"].find(
                {"turn": {"$in": turns[i : i + 2000]}},
                {"turn": 1, "direction": 1, "createdAt": 1, "status": 1},
            ):
                entry = found[doc["turn"]]
                if doc["direction"] == "inbound":
                    entry["inbound"] += 1
                else:
                    entry["replies"].append((doc["_id"], doc["createdAt"], doc.get("status")))
        return found

    def sends_by_message(self, sent: list[dict[str, Any]]) -> tuple[dict[Any, list[float]], int]:
        """Our reply id -> when the emulator received each send of it; and the sends no
        `whatsapp_sent` record maps (sent, but the outcome never recorded)."""
        ids = [s["id"] for s in sent]
        mapping: dict[str, Any] = {}
        for i in range(0, len(ids), 2000):
            for doc in self.db["whatsapp_sent"].find(
                {"_id": {"$in": ids[i : i + 2000]}}, {"messageId": 1}
            ):
                mapping[doc["_id"]] = doc["messageId"]
        by_message: dict[Any, list[float]] = defaultdict(list)
        unmapped = 0
        for s in sent:
            if s["id"] in mapping:
                by_message[mapping[s["id"]]].append(s["at"])
            else:
                unmapped += 1
        return by_message, unmapped

    def latencies(
        self, accepted: dict[str, str], intended: dict[str, float], sent: list[dict[str, Any]]
    ) -> dict[str, Any]:
        turns = self.replies_of(list(accepted))
        by_message, _ = self.sends_by_message(sent)
        first, last = [], []
        for wamid in accepted:
            times = [
                t for rid, _, _ in turns["wa:" + wamid]["replies"] for t in by_message.get(rid, [])
            ]
            if times:
                first.append((min(times) - intended[wamid]) * 1000)
                last.append((max(times) - intended[wamid]) * 1000)
        return {
            "answered": len(first),
            "first_p50_ms": rnd(percentile(first, 50)),
            "first_p99_ms": rnd(percentile(first, 99)),
            "last_p50_ms": rnd(percentile(last, 50)),
            "last_p99_ms": rnd(percentile(last, 99)),
        }

    def integrity(
        self,
        accepted: dict[str, str],
        sent: list[dict[str, Any]],
        order: dict[str, list[str]],
        seconds: dict[str, int],
    ) -> dict[str, Any]:
        turns = self.replies_of(list(accepted))
        by_message, unmapped = self.sends_by_message(sent)
        lost, stored_twice, processed_twice, sent_twice = [], 0, 0, 0
        for wamid in accepted:
            entry = turns.get("wa:" + wamid)
            replies = entry["replies"] if entry else []
            sent_replies = [rid for rid, _, _ in replies if by_message.get(rid)]
            if not entry or not entry["inbound"] or not sent_replies:
                lost.append(wamid)
                continue
            stored_twice += entry["inbound"] > 1
            # One processing stores its replies 1 ms apart: another gap, another processing.
            stamps = sorted(at for _, at, _ in replies)
            gaps = {round((b - a).total_seconds() * 1000) for a, b in itertools.pairwise(stamps)}
            processed_twice += bool(gaps - {1})
            sent_twice += sum(1 for rid, _, _ in replies if len(by_message.get(rid, [])) > 1)
        broken = same_second = 0
        for wamids in order.values():
            spans = []
            for wamid in wamids:
                entry = turns.get("wa:" + wamid)
                times = [t for rid, _, _ in (entry["replies"] if entry else [])
                         for t in by_message.get(rid, [])]  # fmt: skip
                if times:
                    spans.append((min(times), max(times), seconds.get(wamid)))
            # A user's answers go out in the order of their messages: each one's first send
            # after the previous one's last. Messages in the same second of Meta's timestamp
            # (its resolution) are ordered by arrival, which load can swap.
            swapped = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
            broken += any(a[2] != b[2] for a, b in swapped)
            same_second += bool(swapped) and all(a[2] == b[2] for a, b in swapped)
        return {
            "accepted": len(accepted),
            "lost": len(lost),
            "lost_examples": lost[:5],
            "stored_twice": stored_twice,
            "processed_twice": processed_twice,
            "sent_twice": sent_twice,
            "sent_unrecorded": unmapped,
            "order_broken": broken,
            "order_swapped_within_a_second": same_second,
            "users": len(order),
        }


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def goals(section: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The WhatsApp goals of issue 15, as rows of the benchmark's goal table."""
    rows: list[dict[str, Any]] = []

    def add(name: str, value: str, target: str, ok: bool | None, note: str = "") -> None:
        rows.append({"goal": name, "measured": value, "target": target, "pass": ok, "note": note})

    if not section:
        return rows
    steps = {s["offered"]: s for s in section["steps"]}
    ack = steps.get(ACK_GOAL_RATE)
    p99 = ack["ack_p99_ms"] if ack else None
    add(
        f"whatsapp: webhook ack p99 at {ACK_GOAL_RATE}/s",
        f"{fmt(p99)} ms" if ack else "rate not reached",
        f"<= {ACK_P99_MS} ms",
        p99 is not None and p99 <= ACK_P99_MS,
    )
    refused = [s["refused_p99_ms"] for s in section["steps"] if s["refused_p99_ms"] is not None]
    timeouts = sum(s["transport_errors"].get("timeout", 0) for s in section["steps"])
    worst = max(refused, default=None)
    add(
        "whatsapp: refused webhooks p99 (every rate), timeouts",
        f"{fmt(worst)} ms, {timeouts} timeouts",
        f"<= {REFUSED_P99_MS} ms, 0",
        (worst is None or worst <= REFUSED_P99_MS) and timeouts == 0,
        "none refused" if worst is None else "",
    )
    send = steps.get(SEND_GOAL_RATE)
    p99 = send["first_p99_ms"] if send else None
    add(
        f"whatsapp: inbound-to-send p99 at {SEND_GOAL_RATE}/s",
        f"{fmt(p99)} ms (whole answer {fmt(send['last_p99_ms'])} ms)" if send else "not reached",
        f"<= {SEND_P99_MS} ms",
        p99 is not None and p99 <= SEND_P99_MS and bool(send and send["drained"]),
    )
    limit = section["send_limit_per_s"]
    top = max((s["sends_per_s_max_calendar_second"] for s in section["steps"]), default=0)
    sliding = max((s["sends_per_s_max_sliding_second"] for s in section["steps"]), default=0)
    add(
        "whatsapp: sends per second (most in a calendar second)",
        f"{top} (in a sliding second {sliding})",
        f"<= {limit} (configured)",
        top <= limit,
        "dramatiq's limiter counts calendar seconds",
    )
    i = section["integrity"]
    twice = i["processed_twice"] + i["stored_twice"]
    add(
        "whatsapp: lost + processed twice + sent twice",
        f"{i['lost']} + {twice} + {i['sent_twice']} of {i['accepted']}",
        "0",
        i["lost"] + twice + i["sent_twice"] == 0,
    )
    swapped = i.get("order_swapped_within_a_second", 0)
    add(
        "whatsapp: users whose replies went out of order",
        f"{i['order_broken']} of {i['users']}",
        "0",
        i["order_broken"] == 0,
        f"{swapped} more: two messages in one second of Meta's timestamp, arrived swapped"
        if swapped
        else "",
    )
    return rows


PLOT_NAME = "benchmarks-whatsapp.png"


def docs(section: dict[str, Any]) -> list[str]:
    """The WhatsApp part of docs/benchmarks.md."""
    i = section["integrity"]
    lines = [
        f"### WhatsApp: signed webhooks through nginx ({len(section['steps'])} rates,"
        f" 1 in {section['redeliver_every']} redelivered, {section['queue_workers']} queue"
        f" workers, send limit {section['send_limit_per_s']}/s)",
        "",
        "Acknowledgement from each webhook's intended send time; inbound-to-send from the same"
        " time to the emulator receiving the turn's first reply (and its last: the whole"
        " answer); sends per second as the emulator received them; depth = inbox + outbox"
        " documents (MongoDB), sampled every 0.5 s.",
        "",
        "| offered /s | acked /s | ack p50 | ack p99 | errors | messages | replies sent"
        " | to send p50 | to send p99 | whole answer p99 | sends /s max (sliding) | depth max"
        " | drained after the load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in section["steps"]:
        errors = " ".join(
            [f"{c}: {n}" for c, n in s["codes"].items() if c != "200"]
            + [f"{k}: {n}" for k, n in s["transport_errors"].items()]
        )
        lines.append(
            f"| {s['offered']} | {s['achieved']:.1f} | {fmt(s['ack_p50_ms'])} ms"
            f" | {fmt(s['ack_p99_ms'])} ms | {errors or '-'} | {s['messages']}"
            f" | {s['replies_sent']} | {fmt(s['first_p50_ms'])} ms | {fmt(s['first_p99_ms'])} ms"
            f" | {fmt(s['last_p99_ms'])} ms | {s['sends_per_s_max_calendar_second']}"
            f" ({s['sends_per_s_max_sliding_second']}) | {s['depth_max']}"
            f" | {'yes' if s['drained'] else 'no'}, {s['drain_s']:.1f} s |"
        )
    lines += [
        "",
        f"After the run ({'drained' if i['drained_at_end'] else '**not drained**'}"
        f" {i['final_drain_s']:.0f} s after the last rate): {i['accepted']} acknowledged"
        f" messages: **lost {i['lost']}, processed twice {i['processed_twice']} (stored twice"
        f" {i['stored_twice']}), sent twice {i['sent_twice']}**; sends Meta took whose outcome"
        f" was not recorded {i['sent_unrecorded']}; users whose replies went out of order"
        f" {i['order_broken']} of {i['users']} (and"
        f" {i.get('order_swapped_within_a_second', 0)} whose two messages in one second of"
        " Meta's timestamp, its resolution, arrived swapped and were answered as they arrived).",
        "",
        f"![WhatsApp queue depth over time, per rate]({PLOT_NAME})",
    ]
    return lines


def plot(section: dict[str, Any], path: Path, date: str) -> None:
    """Queue depth over time per rate (left), inbound-to-send against the rate (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in section["steps"]:
        series = s["depth_series"]
        left.plot([p[0] for p in series], [p[1] + p[2] for p in series],
                  label=f"{s['offered']}/s")  # fmt: skip
    left.set_xlabel("seconds from the start of the rate's load")
    left.set_ylabel("inbox + outbox documents")
    left.set_title(f"queue depth (load lasts {section['steps'][0]['load_s']:.0f} s)")
    left.legend()
    offered = [s["offered"] for s in section["steps"]]
    for key, label in (("ack_p99_ms", "webhook ack p99"), ("first_p99_ms", "to send p99"),
                       ("first_p50_ms", "to send p50")):  # fmt: skip
        right.plot(offered, [s[key] or 0 for s in section["steps"]], marker="o", label=label)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xticks(offered, [str(o) for o in offered])
    right.set_xlabel("offered webhooks /s")
    right.set_ylabel("ms")
    right.set_title("latency")
    right.legend()
    fig.suptitle(f"chatbot WhatsApp: nginx -> 2 instances, 2 queue workers, {date}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
