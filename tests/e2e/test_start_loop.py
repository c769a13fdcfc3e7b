"""`make run` starts that always work: the short form of devtools/start_loop.py.

Three starts of the real supervised stack (devtools/run.sh on free ports, STACK_VAR in a
temporary directory): stopped by Ctrl-C, then by SIGKILL to supervisord, then by HUP (the
terminal closed). Each must be healthy through nginx within 30 s, served by its own
processes, and leave no process of the stack behind within 10 s of its stop. Between the
second and third start a process of the stack left running on purpose (a Redis in its
data directory) is stopped by the start and named; a foreign process on nginx's port
makes the start refuse with one line naming it. `devtools/start_loop.py` runs 20
(docs/operations.md has the result).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.harness import ROOT, free_port

sys.path.insert(0, str(ROOT / "devtools"))
import stack_guard
import start_loop

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack_env():
    # Not under pytest's private (0700) directories: as root PostgreSQL runs as `postgres`.
    var = Path(tempfile.mkdtemp(prefix="chatbot-starts-"))
    var.chmod(0o755)
    env = dict(os.environ)
    for name in ("STACK_ROOT", "NGINX_PREFIX", "STACK_SUPERVISOR_SOCKET", "MONGO_URI", "REDIS_URL"):
        env.pop(name, None)
    env.update(
        STACK_VAR=str(var),
        STACK_PORT=str(free_port()),
        STACK_APP1_PORT=str(free_port()),
        STACK_APP2_PORT=str(free_port()),
        STACK_MONGO_PORT=str(free_port()),
        STACK_REDIS_PORT=str(free_port()),
        STACK_GRAPH_PORT=str(free_port()),
        STACK_PG_PORT=str(free_port()),
        WEB_CONCURRENCY="1",
        GUNICORN_THREADS="4",
    )
    done = subprocess.run(
        ["bash", "-c", "source devtools/stack_env.sh && env -0"],
        cwd=ROOT, env=env, capture_output=True, check=True,
    )  # fmt: skip
    full = dict(i.split("=", 1) for i in done.stdout.decode().split("\0") if "=" in i)
    yield full
    for p in stack_guard.leftovers(str(var)):
        p.kill()
    shutil.rmtree(var, ignore_errors=True)


def test_three_starts_one_unclean_each_healthy_and_nothing_left(stack_env):
    env, log = stack_env, Path(stack_env["STACK_VAR"]) / "loop.log"
    kinds = ["Ctrl-C", "SIGKILL supervisord", "HUP"]
    previous: set[int] = set()
    results = []
    left_behind = None
    try:
        for number, kind in enumerate(kinds, start=1):
            if number == 3:
                left_behind = _leave_a_redis_behind(env)
            result, previous = start_loop.one_start(number, kind, env, log, previous)
            print(result.line())
            results.append(result)
            assert result.ok, f"{result.line()}\n{log.read_text(errors='replace')[-4000:]}"
        assert left_behind is not None and left_behind.wait(10) is not None  # stopped by it
    finally:
        if left_behind is not None and left_behind.poll() is None:
            left_behind.kill()
            left_behind.wait()
    assert "left by an earlier run: redis-server" in log.read_text(errors="replace")
    assert stack_guard.leftovers(env["STACK_VAR"]) == []


def test_a_port_held_by_another_process_is_one_line_and_no_start(stack_env):
    env = stack_env
    held = subprocess.Popen(
        [sys.executable, "-m", "http.server", env["STACK_PORT"], "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while stack_guard.holder(int(env["STACK_PORT"])) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        done = subprocess.run(
            ["bash", "devtools/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
    finally:
        held.kill()
        held.wait()
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"port {env['STACK_PORT']} (nginx, STACK_PORT) is held by pid {held.pid}" in lines[0]
    assert stack_guard.leftovers(env["STACK_VAR"]) == []


def _leave_a_redis_behind(env: dict[str, str]) -> subprocess.Popen:
    """A Redis of this stack that nobody stopped (its data directory is STACK_VAR/redis)."""
    data = Path(env["STACK_VAR"]) / "redis"
    data.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["redis-server", "--port", env["STACK_REDIS_PORT"], "--bind", "127.0.0.1", "--save", ""],
        cwd=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while stack_guard.holder(int(env["STACK_REDIS_PORT"])) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc
