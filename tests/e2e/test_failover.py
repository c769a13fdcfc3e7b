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

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.e2e.loadgen import Load, Outcome, check, make_users, report
from tests.e2e.loadgen import under_load as loadgen_under_load
from tests.harness import ROOT, free_port, http

pytestmark = pytest.mark.e2e

FULL = os.environ.get("FAILOVER_FULL") == "1"
INTERVAL_S = 2.0 if FULL else 0.5  # the checker's interval here (30 s in production)
STEADY_S = 10.0 if FULL else 1.5  # load before and after each event
BURST = 16  # chat POSTs sent at once just before a kill, to have some in flight


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

    def resent_chat_posts(self) -> int:
        """Chat POSTs nginx passed to a second instance (its access log lists both)."""
        return sum(
            1
            for line in self.log_path.read_text(errors="replace").splitlines()
            if '"method":"POST","uri":"/api/v1/chat/messages"' in line
            and re.search(r'"upstream":"[^"]*, [^"]*"', line)
        )

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
        STACK_GRAPH_PORT=str(free_port()),
        STACK_PG_PORT=str(free_port()),
        CHATBOT_ENV="production",
        SECRET_KEY="failover-secret-key-not-for-real-use",
        # No SMS gateway here: keep the default (logging) code sender,
        # which production refuses unless told explicitly.
        ALLOW_LOG_CODE_SENDER="1",
        # The WhatsApp channel (on in `make run`) has fault runs of its own
        # (tests/e2e/test_whatsapp.py); off here, production would want its secrets.
        WHATSAPP_ENABLED="0",
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


@pytest.fixture(scope="module")
def load(supervised: Stack) -> Load:
    return Load(supervised, make_users(supervised), burst_users=make_users(supervised, BURST))


def under_load(load: Load, event: Callable[[], str]) -> tuple[list[Outcome], str]:
    return loadgen_under_load(load, event, STEADY_S)


# --- the scenarios ------------------------------------------------------------------


def test_sigkill_of_a_whole_instance(supervised: Stack, load: Load):
    stack = supervised
    before = stack.checker("app1")["transitions"]

    def event() -> str:
        old = stack.pid("app1")
        resent = stack.resent_chat_posts()
        load.burst()
        time.sleep(0.01)
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
            f"later; checker transitions: {changes}; chat POSTs resent by nginx: "
            f"{stack.resent_chat_posts() - resent}"
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
        resent = stack.resent_chat_posts()
        load.burst()
        time.sleep(0.01)
        os.kill(victim, signal.SIGKILL)
        took = wait_for(
            lambda: _replaced(stack.workers("app1"), {victim}, len(workers)),
            30, "app1's killed worker replaced", stack,
        )  # fmt: skip
        return (
            f"worker {victim} of app1 killed, replaced in {took:.1f} s; chat POSTs resent by "
            f"nginx: {stack.resent_chat_posts() - resent}"
        )

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
        # `stop` returns once gunicorn has exited, which under load (requests in flight
        # finishing) can outlast the checker's verdict: watch nginx meanwhile.
        stopped: list[str] = []
        stopper = threading.Thread(target=lambda: stopped.append(stack.ctl("stop", "app2")))
        stopper.start()
        try:
            wait_for(
                lambda: bool(closed_at) and not stack.upstream("app2")["in_rotation"],
                3 * INTERVAL_S + 5, "the checker marks app2 down", stack,
            )  # fmt: skip
            timings["down"] = time.monotonic() - closed_at[0]
        finally:
            watching.set()
            watcher.join()
            stopper.join()
        assert stopped and "stopped" in stopped[0], stopped
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


# --- the database under load (issue 14, item 2): nobody's hand, 0 lost, 0 twice --------


def _database_pid(stack: Stack) -> int:
    return int(stack.ctl("pid", "database").strip())


def _healthy_again(stack: Stack, since: float, limit: float) -> float:
    """Seconds from `since` until /health through nginx answers 200 (at most `limit`)."""
    wait_for(
        lambda: http("GET", stack.url + "/health", timeout=2).status == 200,
        limit, "/health 200 again", stack,
    )  # fmt: skip
    return time.monotonic() - since


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_ferretdb_killed_or_frozen_comes_back_by_itself(supervised: Stack, load: Load, how: str):
    """SIGKILL: supervisord starts it again; SIGSTOP: the watchdog finds it frozen and kills it."""
    stack = supervised

    def event() -> str:
        old = _database_pid(stack)
        os.kill(old, getattr(signal, how))
        hit = time.monotonic()
        took = _healthy_again(stack, hit, 20)
        wait_for(lambda: _database_pid(stack) != old, 5, "a new FerretDB", stack)
        assert took < 10, took
        return f"FerretDB {how}: /health 200 again {took:.1f} s later"

    outcomes, note = under_load(load, event)
    check(report(f"ferretdb-{how.lower()}", stack, outcomes, note), stack)


def test_postgresql_killed_comes_back_by_itself(supervised: Stack, load: Load):
    stack = supervised

    def event() -> str:
        postmaster = stack.var / "postgres" / "postmaster.pid"
        old = int(postmaster.read_text().split("\n", 1)[0])
        os.kill(old, signal.SIGKILL)
        took = _healthy_again(stack, time.monotonic(), 20)
        assert took < 10, took
        return f"PostgreSQL SIGKILL: /health 200 again {took:.1f} s later"

    outcomes, note = under_load(load, event)
    check(report("postgresql-sigkill", stack, outcomes, note), stack)
