"""Before `make run` starts: stop what an earlier run of this stack left behind; refuse
ports held by anybody else.

    .venv/bin/python devtools/stack_guard.py   (devtools/run.sh runs it; stack_env.sh's variables)

A process is this stack's when it was started for this STACK_VAR (see `ours()`): by its
supervisord, or PostgreSQL, nginx and Redis with their files under STACK_VAR. Such
processes are stopped (TERM, PostgreSQL's postmaster INT; SIGKILL after STOP_WAIT_S) and
named, one line each.
Then every port of the stack must be free: one held by a process that is not ours is a
one-line error naming it, exit status 1. A PostgreSQL pid file whose process is gone (or
is not that cluster's) is removed, so the server does not refuse to start on it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import psutil

STOP_WAIT_S = 10.0


def ours(process: psutil.Process, var: str) -> bool:
    """Started for this STACK_VAR: by its supervisord (whose programs, and their children,
    inherit SUPERVISOR_PROCESS_NAME and STACK_VAR), or that supervisord itself; PostgreSQL
    and nginx by their command line (their process titles overwrite their environment),
    Redis by its working directory. A shell that merely has STACK_VAR set is not ours."""
    try:
        name = process.name()
        if name in ("postgres", "nginx"):
            return any(arg == var or arg.startswith(var + "/") for arg in process.cmdline())
        if name == "redis-server":
            return process.cwd().startswith(var + "/")
        env = process.environ()
        if env.get("STACK_VAR") != var:
            return False
        return "SUPERVISOR_PROCESS_NAME" in env or "supervisord" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def leftovers(var: str) -> list[psutil.Process]:
    """The stack's processes, this one and its ancestors (run.sh, make) excepted."""
    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents())}
    return [p for p in psutil.process_iter() if p.pid not in spared and ours(p, var)]


def stop(found: list[psutil.Process]) -> None:
    """TERM for each (PostgreSQL's postmaster INT, its fast shutdown), SIGKILL for what is
    left after STOP_WAIT_S. Children are signalled too: not every parent stops its own."""
    for p in found:
        try:
            postmaster = p.name() == "postgres" and p.parent().name() != "postgres"
            print(f"chatbot: stopping pid {p.pid}, left by an earlier run: {describe(p)}")
            p.send_signal(signal.SIGINT if postmaster else signal.SIGTERM)
        except psutil.Error:
            pass
    alive = _wait_stopped(found, STOP_WAIT_S)
    for p in alive:
        print(f"chatbot: pid {p.pid} did not stop within {STOP_WAIT_S:g} s; SIGKILL")
        with contextlib.suppress(psutil.Error):
            p.kill()
    _wait_stopped(alive, 5)


def _wait_stopped(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of `procs` still running after up to `timeout` s. A zombie has stopped: it
    waits only for its parent to reap it (psutil.wait_procs would wait out the timeout on
    a process that is not our child)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:  # gone (NoSuchProcess), or no longer ours to look at
        return False


def describe(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())[:160] or p.name()
    except psutil.Error:
        return "?"


def stray_nginx_worker(p: psutil.Process, port: int, variable: str) -> bool:
    """An nginx worker whose master is gone (its title names no path), started from this
    checkout and holding this stack's own nginx port: left by an earlier run."""
    try:
        return (
            variable == "STACK_PORT"
            and p.name() == "nginx"
            and p.ppid() == 1
            and p.cwd() == os.environ.get("STACK_ROOT", os.getcwd())
        )
    except psutil.Error:
        return False


def holder(port: int) -> psutil.Process | None:
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            try:
                return psutil.Process(c.pid)
            except psutil.Error:
                return None
    return None


def stale_postmaster_pid(data_dir: Path) -> None:
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    try:
        p = psutil.Process(pid)
        if p.name() == "postgres" and str(data_dir) in " ".join(p.cmdline()):
            return  # alive: ours, and stopped above, or another stack's (the port check says)
    except psutil.Error:
        pass
    print(f"chatbot: removing {pid_file}: pid {pid} is not that cluster's server")
    pid_file.unlink(missing_ok=True)


def main() -> int:
    var = os.path.realpath(os.environ["STACK_VAR"])
    found = leftovers(var)
    if found:
        stop(found)
    if os.environ.get("STACK_EMBEDDED_MONGO") == "true":
        stale_postmaster_pid(Path(var) / "postgres")
    names = {
        "STACK_PORT": "nginx",
        "STACK_APP1_PORT": "app1",
        "STACK_APP2_PORT": "app2",
    }
    if os.environ.get("WHATSAPP_ENABLED") == "1":
        names["STACK_GRAPH_PORT"] = "the Graph API emulator"
    if os.environ.get("STACK_EMBEDDED_MONGO") == "true":
        names |= {"STACK_MONGO_PORT": "FerretDB", "STACK_PG_PORT": "PostgreSQL"}
    if os.environ.get("STACK_EMBEDDED_REDIS") == "true":
        names["STACK_REDIS_PORT"] = "Redis"
    deadline = time.monotonic() + 5  # sockets of processes just stopped close with them
    for variable, what in names.items():
        port = int(os.environ[variable])
        while (p := holder(port)) is not None and ours(p, var) and time.monotonic() < deadline:
            time.sleep(0.1)
        if p is not None and stray_nginx_worker(p, port, variable):
            stop([p])
            p = holder(port)
        if p is not None:
            print(
                f"chatbot: port {port} ({what}, {variable}) is held by pid {p.pid}, "
                f"not this stack's: {describe(p)}; stop it or choose another {variable}",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
