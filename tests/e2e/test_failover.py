"""Failover under a steady load, counted: no failed and no duplicated request.

The real supervised stack (`devtools/run.sh` under supervisord: its own PostgreSQL,
FerretDB, Redis, two gunicorn instances, the sweeper, nginx and the active health
checker) runs on free ports with its files in a temporary directory. Through nginx,
steady GETs and chat POSTs (each with a unique clientMessageId; a 503 or a 409 is sent
again with the same id after its Retry-After, as a real client does) run while the
stack goes through, one at a time:

- SIGKILL of one whole instance (master and workers): supervisord starts it again and
  it rejoins once healthy;
- a rolling restart (python -m chatbot.ops.restart: drain, stop, start, 2 healthy
  checks, back), of both instances;
- a HUP of one instance's gunicorn (its workers replaced);
- SIGKILL of one worker;
- a graceful stop of one instance (no draining): the checker marks it down within 3
  intervals, and up again after 2 successes once it is started again.

Each scenario prints sent / succeeded / failed by status / duplicated (read back from
the database: an inbound message stored twice, or a turn whose replies were stored
more than once) and asserts 0 failed and 0 duplicated.

`make test` runs a short version (a few seconds of load per scenario, health checks
every 0.5 s); `make failover` (FAILOVER_FULL=1) the long one. FAILOVER_GET_RATE and
FAILOVER_CHAT_RATE set the rates (requests per second, default 20 and 4).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pymongo
import pytest

from tests.harness import ROOT, free_port, http

pytestmark = pytest.mark.e2e

FULL = os.environ.get("FAILOVER_FULL") == "1"
GET_RATE = float(os.environ.get("FAILOVER_GET_RATE", "20"))
CHAT_RATE = float(os.environ.get("FAILOVER_CHAT_RATE", "4"))
INTERVAL_S = 2.0 if FULL else 0.5  # the checker's interval here (30 s in production)
STEADY_S = 10.0 if FULL else 2.0  # load before and after each event
CHAT_USERS = 12  # each sends every CHAT_USERS / CHAT_RATE seconds
GET_THREADS = 8
MAX_RETRIES = 5  # a client resends a 503/409 this often, honouring Retry-After


@dataclass
class Stack:
    proc: subprocess.Popen
    env: dict[str, str]
    var: Path
    url: str
    log_path: Path
    mongo_uri: str
    mongo_db: str

    @property
    def prefix(self) -> Path:
        return self.var / "nginx"

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            ["bash", "devtools/stackctl", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        return done.stdout + done.stderr

    def pid(self, name: str) -> int:
        return int((self.var / "run" / f"{name}.pid").read_text().strip())

    def upstream(self, name: str) -> dict:
        state = json.loads((self.prefix / "upstreams.json").read_text())
        return next(s for s in state["servers"] if s["name"] == name)

    def checker(self, name: str) -> dict:
        status = json.loads((self.prefix / "checker.json").read_text())
        return next(s for s in status["servers"] if s["name"] == name)

    def workers(self, name: str) -> set[int]:
        """The instance's booted workers, from its own control socket."""
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "gunicornc"), "-s", str(self.var / "run" / f"{name}.ctl"),
             "-c", "show workers", "-j"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        try:
            return {w["pid"] for w in json.loads(done.stdout)["workers"]}
        except (ValueError, KeyError):
            return set()

    def grep(self, text: str, lines: int = 30) -> str:
        found = [
            line for line in self.log_path.read_text(errors="replace").splitlines() if text in line
        ]
        return "\n".join(found[-lines:])

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(condition: Callable[[], bool], timeout: float, what: str, stack: Stack) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not after {timeout} s\n{stack.log_tail()}")
        time.sleep(0.05)
    return time.monotonic() - started


def both_in_rotation(stack: Stack) -> bool:
    try:
        return all(
            stack.upstream(n)["in_rotation"] and stack.checker(n)["consecutive_successes"] >= 1
            for n in ("app1", "app2")
        )
    except (OSError, ValueError, StopIteration, KeyError):
        return False


@pytest.fixture(scope="module")
def supervised() -> Iterator[Stack]:
    # Not under pytest's private (0700) directories: as root, PostgreSQL runs as the
    # `postgres` user, which must reach var/postgres.
    var = Path(tempfile.mkdtemp(prefix="chatbot-failover-"))
    var.chmod(0o755)
    port = free_port()
    env = dict(os.environ)
    mongo_db = f"failover_{uuid.uuid4().hex[:8]}"
    env.update(
        STACK_VAR=str(var),
        STACK_PORT=str(port),
        STACK_APP1_PORT=str(free_port()),
        STACK_APP2_PORT=str(free_port()),
        STACK_MONGO_PORT=str(free_port()),
        STACK_REDIS_PORT=str(free_port()),
        STACK_PG_PORT=str(free_port()),
        CHATBOT_ENV="production",
        SECRET_KEY="failover-secret-key-not-for-real-use",
        MONGO_DB=mongo_db,
        WEB_CONCURRENCY="2",
        CHAT_RATE_LIMIT="100000 per minute",
        RATE_LIMIT_DEFAULT="100000 per minute",
        HEALTHCHECK_INTERVAL_S=str(INTERVAL_S),
        HEALTHCHECK_TIMEOUT_S="3",
        LOG_LEVEL="INFO",
    )
    for name in ("STACK_ROOT", "NGINX_PREFIX", "STACK_SUPERVISOR_SOCKET"):
        env.pop(name, None)
    log_path = var / "stack.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            ["bash", "devtools/run.sh"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    mongo_uri = env.get("MONGO_URI") or f"mongodb://127.0.0.1:{env['STACK_MONGO_PORT']}/"
    stack = Stack(proc, env, var, f"http://127.0.0.1:{port}", log_path, mongo_uri, mongo_db)
    try:
        wait_for(
            lambda: http("GET", stack.url + "/health", timeout=2).status == 200
            if _listening(port)
            else False,
            60, "the stack answers /health", stack,
        )  # fmt: skip
        wait_for(lambda: both_in_rotation(stack), 30, "both instances checked", stack)
        yield stack
    finally:
        _stop(stack)
        shutil.rmtree(var, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _stop(stack: Stack) -> None:
    """Ctrl-C's path: supervisord stops every process, then exits."""
    try:
        tree = psutil.Process(stack.proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    if stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGINT)
        try:
            stack.proc.wait(60)
        except subprocess.TimeoutExpired:
            stack.proc.kill()
            stack.proc.wait()
    left = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in left:
        p.kill()
    assert not left, f"processes outlived supervisord: {[p.pid for p in left]}"


# --- the load ---------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str  # "get" or "chat"
    status: int | str  # the final answer (a status, or the exception's name)
    answers: list  # every answer, retries included
    cmid: str | None = None
    user: str | None = None
    replies: int = 0
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.status in (200, 201)


@dataclass
class Load:
    stack: Stack
    users: list[dict]
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.stop.clear()
        self.outcomes = []
        self.threads = [
            threading.Thread(target=self._chat_loop, args=(u, i), daemon=True)
            for i, u in enumerate(self.users)
        ] + [
            threading.Thread(target=self._get_loop, args=(i,), daemon=True)
            for i in range(GET_THREADS)
        ]
        for t in self.threads:
            t.start()

    def finish(self) -> list[Outcome]:
        self.stop.set()
        for t in self.threads:
            t.join(90)
        return self.outcomes

    def _record(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def _paced(self, period: float, offset: float, send: Callable[[int], None]) -> None:
        started = time.monotonic() + offset
        n = 0
        while not self.stop.is_set():
            delay = started + n * period - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return
            send(n)
            n += 1

    def _send(self, method: str, path: str, body=None, headers=None) -> tuple[list, object]:
        answers: list = []
        reply = None
        for _ in range(MAX_RETRIES + 1):
            try:
                reply = http(method, self.stack.url + path, body, headers, timeout=40)
            except OSError as exc:  # a reset or refused connection reached the client
                answers.append(type(exc).__name__)
                reply = None
                break
            answers.append(reply.status)
            if reply.status not in (503, 409):
                break
            time.sleep(min(float(reply.headers.get("Retry-After") or 1), 2.0))
        return answers, reply

    def _chat_loop(self, user: dict, index: int) -> None:
        period = len(self.users) / CHAT_RATE

        def send(n: int) -> None:
            cmid = f"fo-{uuid.uuid4().hex}"
            answers, reply = self._send(
                "POST", "/api/v1/chat/messages", {"text": "halo", "clientMessageId": cmid},
                user["headers"],
            )  # fmt: skip
            outcome = Outcome("chat", answers[-1], answers, cmid, user["id"])
            if reply is not None and reply.status in (200, 201):
                body = reply.json()
                outcome.replies = len(body["replies"])
                outcome.duplicate = bool(body.get("duplicate"))
            self._record(outcome)

        self._paced(period, index * period / len(self.users), send)

    def _get_loop(self, index: int) -> None:
        period = GET_THREADS / GET_RATE
        user = self.users[index % len(self.users)]
        paths = ["/livez", "/api/v1/chat/messages?limit=10", "/api/v1/children"]

        def send(n: int) -> None:
            path = paths[n % len(paths)]
            answers, _ = self._send("GET", path, None, user["headers"])
            self._record(Outcome("get", answers[-1], answers))

        self._paced(period, index * period / GET_THREADS, send)


@pytest.fixture(scope="module")
def load(supervised: Stack) -> Load:
    users = []
    for i in range(CHAT_USERS):
        phone = f"0813{uuid.uuid4().int % 10**8:08d}"
        reply = http("POST", supervised.url + "/api/v1/chat/start", {"phoneNumber": phone})
        assert reply.status == 201, reply.body
        body = reply.json()
        token = body["token"]
        users.append({"phone": phone, "headers": {"Authorization": f"Bearer {token}"}, "index": i})
    with pymongo.MongoClient(supervised.mongo_uri) as client:
        db = client[supervised.mongo_db]
        for user in users:
            e164 = "+62" + user["phone"][1:]
            user["id"] = str(db["users"].find_one({"phoneNumber": e164})["_id"])
    return Load(supervised, users)


def duplicated(stack: Stack, outcomes: list[Outcome]) -> tuple[int, int]:
    """(duplicated, lost) chat turns, read back from the database."""
    from bson import ObjectId

    chats = [o for o in outcomes if o.kind == "chat" and o.cmid]
    turns = {o.cmid for o in chats}
    inbound: collections.Counter = collections.Counter()
    outbound: collections.Counter = collections.Counter()
    with pymongo.MongoClient(stack.mongo_uri) as client:
        users = list({ObjectId(o.user) for o in chats})
        for doc in client[stack.mongo_db]["messages"].find(
            {"userId": {"$in": users}}, {"turn": 1, "direction": 1}
        ):
            if doc.get("turn") in turns:
                (inbound if doc["direction"] == "inbound" else outbound)[doc["turn"]] += 1
    dup = lost = 0
    for o in chats:
        if inbound[o.cmid] > 1 or (o.ok and outbound[o.cmid] > o.replies):
            dup += 1
        if o.ok and inbound[o.cmid] == 0:
            lost += 1
    return dup, lost


def report(name: str, stack: Stack, outcomes: list[Outcome], note: str = "") -> dict:
    failed = collections.Counter(str(o.status) for o in outcomes if not o.ok)
    dup, lost = duplicated(stack, outcomes)
    retried = sum(1 for o in outcomes if len(o.answers) > 1)
    counts = {
        "scenario": name,
        "sent": len(outcomes),
        "gets": sum(1 for o in outcomes if o.kind == "get"),
        "chat_posts": sum(1 for o in outcomes if o.kind == "chat"),
        "succeeded": sum(1 for o in outcomes if o.ok),
        "failed": dict(failed),
        "duplicated": dup,
        "lost": lost,
        "resent_after_503_or_409": retried,
        "answered_duplicate_true": sum(1 for o in outcomes if o.duplicate),
    }
    print(f"\nfailover {json.dumps(counts)}{'  ' + note if note else ''}")
    return counts


def check(counts: dict, stack: Stack) -> None:
    assert counts["failed"] == {}, f"{counts}\n{stack.log_tail()}"
    assert counts["duplicated"] == 0 and counts["lost"] == 0, counts
    assert counts["sent"] > 0 and counts["chat_posts"] > 0, counts


def under_load(load: Load, event: Callable[[], str]) -> tuple[list[Outcome], str]:
    load.start()
    try:
        time.sleep(STEADY_S)
        note = event()
        time.sleep(STEADY_S)
    finally:
        outcomes = load.finish()
    return outcomes, note


# --- the scenarios ------------------------------------------------------------------


def test_sigkill_of_a_whole_instance(supervised: Stack, load: Load):
    stack = supervised
    before = stack.checker("app1")["transitions"]

    def event() -> str:
        old = stack.pid("app1")
        os.killpg(os.getpgid(old), signal.SIGKILL)  # the master and its workers
        back = wait_for(
            lambda: _pid_changed(stack, "app1", old) and _answers(stack, "app1"),
            60, "app1 started again by supervisord", stack,
        )  # fmt: skip
        rejoined = wait_for(lambda: both_in_rotation(stack), 30, "app1 back in rotation", stack)
        time.sleep(2 * INTERVAL_S)  # the checker's status file follows its round
        changes = stack.checker("app1")["transitions"] - before
        return (
            f"app1 answering again {back:.1f} s after SIGKILL, in rotation {rejoined:.1f} s "
            f"later; checker transitions: {changes}"
        )

    outcomes, note = under_load(load, event)
    check(report("sigkill-instance", stack, outcomes, note), stack)


def test_rolling_restart(supervised: Stack, load: Load):
    stack = supervised

    def event() -> str:
        started = time.monotonic()
        done = subprocess.run(
            [
                str(ROOT / ".venv" / "bin" / "python"), "-m", "chatbot.ops.restart", "rolling",
                "--prefix", str(stack.prefix), "--probe-interval", str(INTERVAL_S),
                "--stop", "bash devtools/stackctl stop {name}",
                "--start", "bash devtools/stackctl start {name}",
            ],
            cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert both_in_rotation(stack)
        return f"both instances restarted in {time.monotonic() - started:.1f} s"

    outcomes, note = under_load(load, event)
    check(report("rolling-restart", stack, outcomes, note), stack)


def test_gunicorn_hup(supervised: Stack, load: Load):
    stack = supervised

    def event() -> str:
        old = stack.workers("app2")
        os.kill(stack.pid("app2"), signal.SIGHUP)
        took = wait_for(
            lambda: _replaced(stack.workers("app2"), old, len(old)),
            60, "app2's workers replaced after HUP", stack,
        )  # fmt: skip
        return f"app2's {len(old)} workers replaced in {took:.1f} s"

    outcomes, note = under_load(load, event)
    check(report("gunicorn-hup", stack, outcomes, note), stack)


def test_sigkill_of_one_worker(supervised: Stack, load: Load):
    stack = supervised

    def event() -> str:
        workers = stack.workers("app1")
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        took = wait_for(
            lambda: _replaced(stack.workers("app1"), {victim}, len(workers)),
            30, "app1's killed worker replaced", stack,
        )  # fmt: skip
        return f"worker {victim} of app1 killed, replaced in {took:.1f} s"

    outcomes, note = under_load(load, event)
    check(report("sigkill-worker", stack, outcomes, note), stack)


def test_checker_takes_a_stopped_instance_out_and_puts_it_back(supervised: Stack, load: Load):
    """A graceful stop without draining: the listening socket closes at once."""
    stack = supervised
    timings: dict[str, float] = {}

    def event() -> str:
        closed_at: list[float] = []
        watching = threading.Event()
        watcher = threading.Thread(
            target=_watch_closing, args=(stack.upstream("app2")["address"], closed_at, watching)
        )
        watcher.start()
        try:
            output = stack.ctl("stop", "app2")  # returns once gunicorn has exited
            assert "stopped" in output, output
            wait_for(
                lambda: not stack.upstream("app2")["in_rotation"],
                3 * INTERVAL_S + 5, "the checker marks app2 down", stack,
            )  # fmt: skip
            timings["down"] = time.monotonic() - closed_at[0]
        finally:
            watching.set()
            watcher.join()
        wait_for(
            lambda: (stack.checker("app2")["last_transition"] or {}).get("to") == "unhealthy",
            5, "the checker's status shows the transition", stack,
        )  # fmt: skip
        reason = stack.checker("app2")["last_transition"]["reason"]
        assert reason.startswith("3 failures in a row"), reason
        started_at = time.monotonic()
        assert "started" in stack.ctl("start", "app2")  # returns 2 s (startsecs) after the spawn
        wait_for(lambda: stack.upstream("app2")["in_rotation"], 30, "app2 back in rotation", stack)
        timings["up"] = time.monotonic() - started_at
        return (
            f"app2's port closed at once on TERM; marked down {timings['down']:.1f} s later "
            f"({reason}, interval {INTERVAL_S} s); back in rotation "
            f"{timings['up']:.1f} s after `start` began (its boot, 2 successes)"
        )

    outcomes, note = under_load(load, event)
    if os.environ.get("FAILOVER_DEBUG"):
        print(stack.grep("chatbot.checker", 20))
    # Three failed probes: the third round starts within 2 intervals of the port closing;
    # each round takes a little time of its own (probes, nginx -t and reload) on 2 cores.
    assert timings["down"] <= 3 * INTERVAL_S + 3.0, (timings, stack.grep("chatbot.checker"))
    check(report("checker-down-up", stack, outcomes, note), stack)


def _pid_changed(stack: Stack, name: str, old: int) -> bool:
    try:
        return stack.pid(name) != old
    except (OSError, ValueError):
        return False


def _answers(stack: Stack, name: str) -> bool:
    address = stack.upstream(name)["address"]
    try:
        return http("GET", f"http://{address}/livez", timeout=1).status == 200
    except OSError:
        return False


def _watch_closing(address: str, closed_at: list[float], done: threading.Event) -> None:
    """Note when `address` first refuses a connection (the instance's socket closed)."""
    host, port = address.rsplit(":", 1)
    while not done.is_set() and not closed_at:
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                pass
        except OSError:
            closed_at.append(time.monotonic())
        time.sleep(0.02)


def _replaced(current: set[int], gone: set[int], count: int) -> bool:
    return len(current) == count and not (current & gone)
