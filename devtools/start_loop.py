"""Start and stop the local stack (`devtools/run.sh`) again and again; count the starts that work.

    .venv/bin/python devtools/start_loop.py [--starts 20] [--unclean-every 5]

Each start must answer GET /health 200 through nginx within HEALTHY_WITHIN_S, served by
that start's own processes (every port held by a descendant of that run.sh, none of the
previous start's left), every program running; then it is stopped, in turn by Ctrl-C (INT to its
process group, as the terminal sends it), TERM and HUP (the terminal closed) to run.sh,
and every --unclean-every'th by SIGKILL to supervisord. Within STOPPED_WITHIN_S no
process of the stack may be left (devtools/stack_guard.py's definition). One line per
start, then "N of M starts worked". Ports and STACK_VAR come from the environment as for
`make run` (devtools/stack_env.sh); use ports of your own beside another stack.
tests/e2e/test_start_loop.py runs a short form.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "devtools"))
import stack_guard  # noqa: E402 -- devtools is not a package

HEALTHY_WITHIN_S = 30.0
# A clean stop is graceful and supervisord stops its 12 programs one after another (about a
# second apiece at the least): 6.3-11.7 s measured; a SIGKILLed supervisord's 2-3 s.
STOPPED_WITHIN_S = 15.0
PORTS = ("STACK_PORT", "STACK_APP1_PORT", "STACK_APP2_PORT", "STACK_MONGO_PORT")
PORTS += ("STACK_REDIS_PORT", "STACK_PG_PORT", "STACK_GRAPH_PORT")


@dataclass
class Start:
    number: int
    stop: str
    healthy_s: float | None = None
    stopped_s: float | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def line(self) -> str:
        healthy = f"{self.healthy_s:.1f} s" if self.healthy_s is not None else "-"
        stopped = f"{self.stopped_s:.1f} s" if self.stopped_s is not None else "-"
        verdict = "ok" if self.ok else f"FAILED: {self.problem}"
        stop = f"stop by {self.stop}: {stopped}"
        return f"start {self.number:2}: healthy in {healthy}, {stop}; {verdict}"


def environment() -> dict[str, str]:
    """The stack's variables as run.sh will see them (stack_env.sh's defaults applied)."""
    done = subprocess.run(
        ["bash", "-c", "source devtools/stack_env.sh && env -0"],
        cwd=ROOT, capture_output=True, check=True,
    )  # fmt: skip
    pairs = (item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as reply:  # noqa: S310 -- loopback
            return reply.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def port_holders(env: dict[str, str]) -> dict[str, int | None]:
    wanted = [v for v in PORTS if v != "STACK_PG_PORT" or env["STACK_EMBEDDED_MONGO"] == "true"]
    holders: dict[str, int | None] = {}
    for variable in wanted:
        p = stack_guard.holder(int(env[variable]))
        holders[variable] = p.pid if p else None
    return holders


def settled(env: dict[str, str]) -> bool:
    """Whether supervisord has every program RUNNING (init EXITED, its work done)."""
    done = subprocess.run(
        ["bash", "devtools/stackctl", "status"], cwd=ROOT, env=env, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    states = dict(line.split()[:2] for line in done.stdout.splitlines() if len(line.split()) > 1)
    if not states or states.get("init") != "EXITED":
        return False
    autostarted = {"pgsql", "database", "cache", "watchdog"}
    return all(
        state == "RUNNING" or (name in autostarted and state == "STOPPED")  # not embedded
        for name, state in states.items()
        if name != "init"
    )


def stop_kind(number: int, unclean_every: int) -> str:
    if unclean_every and number % unclean_every == 0:
        return "SIGKILL supervisord"
    return ("Ctrl-C", "TERM", "HUP")[(number - 1) % 3]


def _default_int() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def one_start(
    number: int, kind: str, env: dict[str, str], log: Path, previous: set[int]
) -> tuple[Start, set[int]]:
    start = Start(number, kind)
    var = os.path.realpath(env["STACK_VAR"])
    url = f"http://127.0.0.1:{env['STACK_PORT']}"
    with log.open("ab") as out:
        out.write(f"\n===== start {number} =====\n".encode())
        out.flush()
        run = subprocess.Popen(
            ["bash", "devtools/run.sh"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, as a terminal gives it
            # INT as a terminal delivers it, even when this loop runs in the background
            # of a shell (which ignores INT there, and bash cannot trap an ignored signal).
            preexec_fn=_default_int,
        )  # fmt: skip
    began = time.monotonic()
    mine: set[int] = set()
    try:
        while not healthy(url):
            if run.poll() is not None:
                start.problem = f"run.sh exited with {run.returncode} before it was healthy"
                return start, mine
            if time.monotonic() - began > HEALTHY_WITHIN_S:
                start.problem = f"not healthy within {HEALTHY_WITHIN_S:g} s"
                break
            time.sleep(0.2)
        else:
            start.healthy_s = time.monotonic() - began
        family = {run.pid, *(c.pid for c in psutil.Process(run.pid).children(recursive=True))}
        mine = set(family)
        # /health answers once one instance is up; init starts the second just after.
        while not start.problem and None in port_holders(env).values():
            if time.monotonic() - began > HEALTHY_WITHIN_S:
                start.problem = f"not every port held within {HEALTHY_WITHIN_S:g} s"
            time.sleep(0.2)
        family = {run.pid, *(c.pid for c in psutil.Process(run.pid).children(recursive=True))}
        mine = set(family)
        if not start.problem:
            holders = port_holders(env)
            strangers = {v: pid for v, pid in holders.items() if pid not in family}
            if strangers:
                start.problem = f"ports not held by this start's processes: {strangers}"
            elif family & previous:
                start.problem = f"processes of the previous start serve: {family & previous}"
        # Stopped once it has finished starting (every program up, init done), as a person
        # stops a stack they used: a stop in the middle of the workers' boot waits for it.
        while not start.problem and not settled(env):
            if time.monotonic() - began > HEALTHY_WITHIN_S:
                start.problem = f"not every program running within {HEALTHY_WITHIN_S:g} s"
            time.sleep(0.2)
    finally:
        stopping = time.monotonic()
        if kind == "SIGKILL supervisord":
            pid = int((Path(var) / "supervisor" / "supervisord.pid").read_text().strip())
            os.kill(pid, signal.SIGKILL)
        elif kind == "Ctrl-C":
            os.killpg(run.pid, signal.SIGINT)
        else:
            run.send_signal(signal.SIGTERM if kind == "TERM" else signal.SIGHUP)
        left: list[psutil.Process] = []
        while time.monotonic() - stopping < STOPPED_WITHIN_S + 5:
            left = [p for p in stack_guard.leftovers(var) if p.pid != run.pid]
            if run.poll() is not None and not left:
                start.stopped_s = time.monotonic() - stopping
                break
            time.sleep(0.1)
        if start.stopped_s is None or start.stopped_s > STOPPED_WITHIN_S:
            names = [stack_guard.describe(p) for p in left]
            start.problem = start.problem or f"still running after the stop: {names}"
            for p in left:
                p.kill()
            if run.poll() is None:
                run.kill()
        run.wait()
    return start, mine


def loop(starts: int, unclean_every: int, env: dict[str, str], log: Path) -> list[Start]:
    results: list[Start] = []
    previous: set[int] = set()
    for number in range(1, starts + 1):
        result, previous = one_start(number, stop_kind(number, unclean_every), env, log, previous)
        print(result.line(), flush=True)
        results.append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--unclean-every", type=int, default=5)
    parser.add_argument(
        "--log", type=Path, default=None, help="run.sh's output (default: STACK_VAR/start_loop.log)"
    )
    args = parser.parse_args()
    env = environment()
    Path(env["STACK_VAR"]).mkdir(parents=True, exist_ok=True)
    log = args.log or Path(env["STACK_VAR"]) / "start_loop.log"
    results = loop(args.starts, args.unclean_every, env, log)
    worked = sum(r.ok for r in results)
    left = stack_guard.leftovers(os.path.realpath(env["STACK_VAR"]))
    print(
        f"{worked} of {len(results)} starts worked; after the last stop "
        f"{len(left)} processes left (log: {log})"
    )
    return 0 if worked == len(results) and not left else 1


if __name__ == "__main__":
    sys.exit(main())
