"""Two app "hosts" with addresses of their own behind one nginx; one is cut off the network.

Each host is a network namespace made here, joined to the test's own bridge
(10.213.7.0/24, nothing else on it; traffic never leaves this machine). A gunicorn
instance runs in each, bound to its address, reaching FerretDB and Redis on the bridge's
address. nginx (rendered from the two addresses) and the active checker run outside.
Under a steady load, one host's link is taken down (a network partition: connects time
out, nothing is refused); the checker takes it out of rotation, and back once the link
returns. Counted as in test_failover.py: 0 failed, 0 duplicated.

Needs root (network namespaces) and `ip`; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chatbot.ops import upstreams
from tests.e2e.loadgen import Load, check, make_users, report, under_load
from tests.harness import FERRETDB_BIN, ROOT, FerretDB, Redis, free_port, http, init_db

NET = "10.213.7"
GATEWAY = f"{NET}.1"  # the bridge's address, outside the namespaces
INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 1.0


def _can_make_namespaces() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"cbprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False)
    if made.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return True


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and network namespaces"),
]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def wait_for_address(host: str, port: int, timeout: float = 30.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.3):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@dataclass
class Network:
    """A bridge and one namespace per host, each with a veth into the bridge."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address

    @property
    def bridge(self) -> str:
        return f"cbbr{self.tag}"

    def namespace(self, name: str) -> str:
        return f"cb{self.tag}{name}"

    def link(self, name: str) -> str:
        return f"cbv{self.tag}{name}"  # the host side of the host's veth (<= 15 characters)

    def create(self, names: list[str]) -> None:
        self.remove_leftovers()
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{GATEWAY}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for index, name in enumerate(names, start=2):
            ns, outside, inside = self.namespace(name), self.link(name), f"cbi{self.tag}{name}"
            ip("netns", "add", ns)
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            ip("link", "set", inside, "netns", ns)
            ip("link", "set", outside, "master", self.bridge)
            ip("link", "set", outside, "up")
            ip("-n", ns, "addr", "add", f"{NET}.{index}/24", "dev", inside)
            ip("-n", ns, "link", "set", inside, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            self.hosts[name] = f"{NET}.{index}"

    @staticmethod
    def remove_leftovers() -> None:
        """Remove the bridge and namespaces of an earlier run that was killed before its
        teardown: its bridge holds GATEWAY, and this run's would not be reached."""
        found = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for line in found.splitlines():
            name = line.split()[0] if line.split() else ""
            if re.fullmatch(r"cb[0-9a-f]{5}h\d+", name):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        for bridge in re.findall(r"^\d+: (cbbr[0-9a-f]{5})[:@]", links, re.MULTILINE):
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)

    def cut(self, name: str) -> None:
        ip("link", "set", self.link(name), "down")

    def restore(self, name: str) -> None:
        ip("link", "set", self.link(name), "up")

    def destroy(self) -> None:
        for name in self.hosts:
            subprocess.run(["ip", "netns", "del", self.namespace(name)], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class BridgedFerretDB(FerretDB):
    """FerretDB listening on the bridge's address (its PostgreSQL stays on loopback)."""

    @property
    def uri(self) -> str:
        return f"mongodb://{GATEWAY}:{self.port}/"

    def command(self) -> list[str]:
        return [
            str(FERRETDB_BIN),
            f"-listen={GATEWAY}:{self.port}",
            f"-postgresql-url={self.postgresql_url}?pool_max_conns={self.pool_max_conns}",
        ]

    def start(self) -> None:
        if self.postgres is not None:
            self.postgres.start()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        wait_for_address(GATEWAY, self.port, proc=self.proc)


class BridgedRedis(Redis):
    def command(self) -> list[str]:
        command = super().command()
        command[command.index("--bind") + 1] = f"127.0.0.1 {GATEWAY}"
        # Protected mode refuses clients from other addresses when there is no password;
        # the bridge is the test's own.
        return [*command, "--protected-mode", "no"]

    @property
    def url(self) -> str:
        return f"redis://{GATEWAY}:{self.port}/0"


@dataclass
class TwoHosts:
    network: Network
    url: str
    prefix: Path
    mongo_uri: str
    mongo_db: str
    procs: dict[str, subprocess.Popen]
    logs: dict[str, Path]

    def upstream(self, name: str) -> dict:
        return upstreams.load(self.prefix).to_dict()["servers"][["h1", "h2"].index(name)]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for name, path in self.logs.items()
        )


def _spawn(name: str, command: list[str], env: dict, logs: dict, root: Path) -> subprocess.Popen:
    logs[name] = root / f"{name}.log"
    with logs[name].open("ab") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoHosts]:
    root = tmp_path_factory.mktemp("multihost")
    network = Network()
    started: list = []
    procs: dict[str, subprocess.Popen] = {}
    logs: dict[str, Path] = {}
    try:
        network.create(["h1", "h2"])
        ferretdb, redis = BridgedFerretDB(root / "ferretdb"), BridgedRedis(root / "redis")
        for service in (ferretdb, redis):
            service.start()
            started.append(service)
        mongo_db = f"multihost_{uuid.uuid4().hex[:8]}"
        for name, address in network.hosts.items():
            env = dict(os.environ)
            env.update(
                CHATBOT_ENV="production",
                SECRET_KEY="multihost-secret-key-not-for-real-use",
                # No SMS gateway here: keep the default (logging) code sender,
                # which production refuses unless told explicitly.
                ALLOW_LOG_CODE_SENDER="1",
                INSTANCE_ID=name,
                GUNICORN_BIND=f"{address}:8000",
                GUNICORN_RUN_DIR=str(root / name),
                GUNICORN_FORWARDED_ALLOW_IPS=GATEWAY,
                MONGO_URI=ferretdb.uri,
                MONGO_DB=mongo_db,
                REDIS_URL=redis.url,
                REDIS_BREAKER_RESET_S="0.5",
                WEB_CONCURRENCY="2",
                CHAT_RATE_LIMIT="100000 per minute",
                RATE_LIMIT_DEFAULT="100000 per minute",
            )
            if not procs:  # once, from this host, before the first instance starts
                init_db(env)
            command = ["ip", "netns", "exec", network.namespace(name), sys.executable, "-m"]
            command += ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
            procs[name] = _spawn(name, command, env, logs, root)
            wait_for_address(address, 8000, proc=procs[name])
        prefix = root / "nginx"
        port = free_port()
        upstreams.render(
            prefix, f"127.0.0.1:{port}", [f"{n}={a}:8000" for n, a in network.hosts.items()]
        )
        procs["nginx"] = _spawn(
            "nginx", upstreams.nginx_command(prefix), dict(os.environ), logs, root
        )
        wait_for_address("127.0.0.1", port, proc=procs["nginx"])
        checker_env = dict(
            os.environ,
            HEALTHCHECK_INTERVAL_S=str(INTERVAL_S),
            HEALTHCHECK_TIMEOUT_S=str(PROBE_TIMEOUT_S),
        )
        procs["checker"] = _spawn(
            "checker",
            [sys.executable, "-m", "chatbot.ops.checker", "run", "--prefix", str(prefix)],
            checker_env, logs, root,
        )  # fmt: skip
        stack = TwoHosts(
            network, f"http://127.0.0.1:{port}", prefix, ferretdb.uri, mongo_db, procs, logs
        )
        deadline = time.monotonic() + 30
        while http("GET", stack.url + "/health", timeout=3).status != 200:
            assert time.monotonic() < deadline, stack.log_tail()
            time.sleep(0.2)
        yield stack
    finally:
        for proc in reversed(list(procs.values())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for service in reversed(started):
            service.stop()
        network.destroy()


def test_instances_on_two_addresses_share_the_load(two_hosts: TwoHosts):
    seen = {http("GET", two_hosts.url + "/livez").headers.get("X-Instance-Id") for _ in range(8)}
    assert seen == {"h1", "h2"}
    state = json.loads((two_hosts.prefix / "upstreams.json").read_text())
    assert [s["address"] for s in state["servers"]] == [f"{NET}.2:8000", f"{NET}.3:8000"]


def test_a_host_cut_off_the_network_is_taken_out_and_back(two_hosts: TwoHosts):
    stack = two_hosts
    load = Load(stack, make_users(stack))
    timings: dict[str, float] = {}

    def event() -> str:
        cut_at = time.monotonic()
        stack.network.cut("h1")
        try:
            deadline = time.monotonic() + 3 * (INTERVAL_S + PROBE_TIMEOUT_S) + 10
            while stack.upstream("h1")["in_rotation"]:
                assert time.monotonic() < deadline, stack.log_tail()
                time.sleep(0.05)
            timings["down"] = time.monotonic() - cut_at
            time.sleep(2)  # the load runs on h2 alone
        finally:
            stack.network.restore("h1")
        back_at = time.monotonic()
        deadline = back_at + 30
        while not stack.upstream("h1")["in_rotation"]:
            assert time.monotonic() < deadline, stack.log_tail()
            time.sleep(0.05)
        timings["up"] = time.monotonic() - back_at
        return (
            f"h1 cut off: out of rotation {timings['down']:.1f} s later (3 probes timing out "
            f"after {PROBE_TIMEOUT_S} s), back {timings['up']:.1f} s after its link returned"
        )

    outcomes, note = under_load(load, event, steady_s=2.0)
    counts = report("multihost-cut", stack, outcomes, note)
    check(counts, stack)
    served = {http("GET", stack.url + "/livez").headers.get("X-Instance-Id") for _ in range(8)}
    assert served == {"h1", "h2"}, served
