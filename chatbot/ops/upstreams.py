"""nginx's list of app instances, which of them are in rotation, and graceful reloads.

Open-source nginx changes its upstream servers only through its configuration, so the
list lives in a small JSON state file beside the rendered configuration
(PREFIX/upstreams.json), and every change re-renders nginx/nginx.conf.template and
reloads nginx gracefully (`nginx -s reload`: new worker processes take the new list,
the old ones finish their requests first). Two writers change it:

- the active health checker (chatbot.ops.checker) sets `healthy`;
- an operator draining an instance (chatbot.ops.restart) sets `drained`.

A server is rendered `down` when it is drained, or unhealthy while another instance is
still in rotation: when every instance that is not drained fails its checks (the
shared database is down, say), they all stay in rotation ("fail open") and nginx's
passive checks decide, as if there were no active checker, instead of refusing every
request. Writers hold an exclusive lock (PREFIX/upstreams.lock) while they read, change
and write, so the checker and a rolling restart never undo each other's change.

The state file is also the operator's view: nginx serves it on loopback only at
`/_ops/upstreams`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from chatbot.errors import ConfigError, ReloadError
from chatbot.settings import PROXY_SECRET_HEADER, GunicornSettings, check_proxy_secret

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "nginx" / "nginx.conf.template"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
STATE_FILE = "upstreams.json"
# nginx's proxy_set_header of PROXY_SECRET, included by nginx.conf; mode 0600, never in
# the state file (served at /_ops/upstreams) and never rewritten by the checker.
SECRET_FILE = "proxy_secret.conf"  # noqa: S105 -- a file name, not a secret
LOCK_FILE = "upstreams.lock"
CONF_FILE = "nginx.conf"
# nginx's passive checks, kept beside the active ones for fast failover between two
# probes: one failed connect or timeout takes a server out for 5 s.
PASSIVE = "max_fails=1 fail_timeout=5s"


def instance_capacity(env: Mapping[str, str] | None = None) -> int:
    """Requests one gunicorn instance serves at once: workers x threads, read from the
    same variables, defaults and validation as gunicorn.conf.py."""
    return GunicornSettings.from_env(env).capacity


def default_max_conns(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    configured = env.get("NGINX_MAX_CONNS", "").strip()
    if not configured:
        return instance_capacity(env)
    if not configured.isdigit():
        raise ConfigError(f"NGINX_MAX_CONNS must be an integer >= 0, got {configured!r}")
    return int(configured)


def parse_upstream(spec: str) -> tuple[str, str]:
    """ "app1=10.0.0.5:8000" -> ("app1", "10.0.0.5:8000"); a bare address names itself."""
    name, sep, address = spec.partition("=")
    if not sep:
        return spec.strip(), spec.strip()
    if not name.strip() or not address.strip():
        raise ValueError(f"upstream must be ADDRESS or NAME=ADDRESS, got {spec!r}")
    return name.strip(), address.strip()


@dataclass
class Server:
    name: str
    address: str
    healthy: bool = True  # the active checker's verdict
    drained: bool = False  # taken out of rotation by an operator


@dataclass
class Upstreams:
    """What nginx is rendered from."""

    listen: str
    servers: list[Server]
    max_conns: int
    user: str | None = None

    def server(self, name_or_address: str) -> Server:
        for server in self.servers:
            if name_or_address in (server.name, server.address):
                return server
        raise KeyError(f"no upstream server {name_or_address!r}")

    def fail_open(self) -> bool:
        """Every server that is not drained is unhealthy: keep them all in rotation."""
        candidates = [s for s in self.servers if not s.drained]
        return bool(candidates) and not any(s.healthy for s in candidates)

    def in_rotation(self, server: Server) -> bool:
        if server.drained:
            return False
        return server.healthy or self.fail_open()

    def to_dict(self) -> dict[str, Any]:
        return {
            "listen": self.listen,
            "max_conns": self.max_conns,
            "user": self.user,
            "fail_open": self.fail_open(),
            "servers": [{**asdict(s), "in_rotation": self.in_rotation(s)} for s in self.servers],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Upstreams:
        fields = ("name", "address", "healthy", "drained")
        return cls(
            listen=data["listen"],
            servers=[Server(**{k: s[k] for k in fields}) for s in data["servers"]],
            max_conns=data["max_conns"],
            user=data.get("user"),
        )


def render_conf(state: Upstreams, prefix: Path) -> str:
    """The nginx configuration for `state` (the template with its tokens filled)."""
    if state.max_conns < 0:
        raise ValueError(f"max_conns must be >= 0 (0 = no limit), got {state.max_conns}")
    lines, probe_lines = [], []
    for server in state.servers:
        down = "" if state.in_rotation(server) else " down"
        lines.append(f"server {server.address} max_conns={state.max_conns} {PASSIVE}{down};")
        # The probes' group: the same instances, never refused for being busy.
        probe_lines.append(f"server {server.address} {PASSIVE}{down};")
    # A root master hands its workers to `user`. The local stack and the tests keep
    # their files in private directories (pytest's are 0700), so by default the
    # workers stay the invoking user; production passes a dedicated one (www-data).
    # A non-root master cannot switch users at all.
    user_line = f"user {state.user or 'root'};" if os.geteuid() == 0 else ""
    text = TEMPLATE.read_text()
    for token, value in {
        "@PREFIX@": str(prefix),
        "@LISTEN@": state.listen,
        "@UPSTREAMS@": "\n        ".join(lines),
        "@PROBE_UPSTREAMS@": "\n        ".join(probe_lines),
        "@USER_LINE@": user_line,
        "@PROXY_SECRET_CONF@": str(prefix / SECRET_FILE),
    }.items():
        text = text.replace(token, value)
    return text


def _write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        # 0644 by default: nginx's workers (www-data in production) serve the state file.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_proxy_secret(prefix: Path, secret: str) -> Path:
    """PREFIX/proxy_secret.conf (0600): nginx sends `secret` as X-Proxy-Secret on every
    request it passes, the app's PROXY_SECRET (chatbot/proxy.py). Empty: nginx sends
    none, and still drops any a client sent."""
    secret = check_proxy_secret(secret)
    path = Path(prefix).resolve() / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# PROXY_SECRET, written by chatbot/ops/upstreams.py (render); read by nginx's master.\n"
        f'proxy_set_header {PROXY_SECRET_HEADER} "{secret}";\n'
    )
    _write_atomically(path, text, mode=0o600)
    return path


def save(state: Upstreams, prefix: Path) -> Path:
    """Write PREFIX/upstreams.json and PREFIX/nginx.conf; return the configuration's path.

    PREFIX/proxy_secret.conf is left as render() wrote it (one that sends no secret is
    made if it is missing, so the configuration always loads).
    """
    prefix = prefix.resolve()
    for name in TEMP_DIRS:
        (prefix / name).mkdir(parents=True, exist_ok=True)
    if not (prefix / SECRET_FILE).exists():
        write_proxy_secret(prefix, "")
    conf = prefix / CONF_FILE
    _write_atomically(conf, render_conf(state, prefix))
    _write_atomically(prefix / STATE_FILE, json.dumps(state.to_dict(), indent=2) + "\n")
    return conf


def load(prefix: Path) -> Upstreams:
    return Upstreams.from_dict(json.loads((prefix / STATE_FILE).read_text()))


def render(
    prefix: Path,
    listen: str,
    upstreams: list[str],
    user: str | None = None,
    max_conns: int | None = None,
    proxy_secret: str | None = None,
) -> Path:
    """A fresh state (every server healthy, none drained) and its configuration.

    `upstreams` are addresses ("127.0.0.1:8001") or NAME=ADDRESS ("app1=10.0.0.5:8000").
    `proxy_secret` (default: PROXY_SECRET from the environment) is what nginx sends the
    instances so that they trust its X-Forwarded-* headers; the instances' PROXY_SECRET.
    """
    servers = [Server(*parse_upstream(spec)) for spec in upstreams]
    if not servers:
        raise ValueError("at least one upstream is needed")
    state = Upstreams(
        listen=listen,
        servers=servers,
        max_conns=default_max_conns() if max_conns is None else max_conns,
        user=user,
    )
    prefix = Path(prefix)
    secret = os.environ.get("PROXY_SECRET", "") if proxy_secret is None else proxy_secret
    with locked(prefix):
        write_proxy_secret(prefix, secret.strip())
        return save(state, prefix)


@contextlib.contextmanager
def locked(prefix: Path) -> Iterator[None]:
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def nginx_command(prefix: Path, *args: str) -> list[str]:
    # -e stderr: never touch the system log directory, even before the config is read.
    nginx = os.environ.get("NGINX_BIN", "nginx")
    return [nginx, "-e", "stderr", "-p", f"{prefix.resolve()}/", "-c", CONF_FILE, *args]


def check_config(prefix: Path) -> None:
    """`nginx -t` on the rendered configuration; ReloadError with nginx's words if invalid."""
    done = subprocess.run(
        nginx_command(prefix, "-t", "-q"), capture_output=True, text=True, check=False, timeout=30
    )
    if done.returncode != 0:
        raise ReloadError(f"nginx -t failed: {done.stderr.strip()}")


def nginx_workers(prefix: Path) -> dict[int, bool]:
    """nginx's child processes: pid -> True when it is an old one finishing its requests."""
    try:
        master = psutil.Process(int((prefix / "nginx.pid").read_text().strip()))
        children = master.children()
    except (FileNotFoundError, ValueError, psutil.Error):
        return {}
    workers = {}
    for child in children:
        try:
            workers[child.pid] = "shutting down" in " ".join(child.cmdline())
        except psutil.Error:
            continue
    return workers


def reload(prefix: Path, *, wait_s: float = 10.0) -> None:
    """Check the configuration, then reload nginx gracefully (old workers finish first).

    `nginx -s reload` only signals the master. This returns once the master has acted
    on it: every worker of the old configuration is gone or finishing its requests
    ("shutting down"), so no new request goes by the old list any more (at most
    `wait_s`; 0 returns at once).
    """
    check_config(prefix)
    before = nginx_workers(prefix)
    done = subprocess.run(
        nginx_command(prefix, "-s", "reload"),
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        raise ReloadError(f"nginx -s reload failed: {done.stderr.strip()}")
    deadline = time.monotonic() + wait_s
    while before and time.monotonic() < deadline:
        now = nginx_workers(prefix)
        if all(now.get(pid, True) for pid in before) and set(now) - set(before):
            return
        time.sleep(0.02)


def change(
    prefix: Path, mutate: Callable[[Upstreams], object], *, reload_nginx: bool = True
) -> tuple[Upstreams, Upstreams]:
    """Under the lock: load, mutate, and when nginx's view changed save and reload.

    Returns (before, after). Raises ReloadError when nginx refused the reload (the
    state and configuration are written all the same: nginx takes them when it starts).
    """
    prefix = Path(prefix)
    with locked(prefix):
        before = load(prefix)
        after = load(prefix)
        mutate(after)
        if after.to_dict() == before.to_dict():
            return before, after
        save(after, prefix)
        rendered_before = [before.in_rotation(s) for s in before.servers]
        rendered_after = [after.in_rotation(s) for s in after.servers]
        if reload_nginx and rendered_before != rendered_after:
            reload(prefix)
        return before, after
