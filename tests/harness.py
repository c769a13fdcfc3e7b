"""Start and stop the real services the tests talk to, on free loopback ports.

Each service runs as a child process with its data in a throw-away directory and
its output in a log file there; `stop()` and `start()` can be called again to
simulate an outage on the same port.

FerretDB runs on its PostgreSQL backend: on a `Postgres` given to it, else on a
throw-away cluster of its own that it starts and stops with itself.

Every gunicorn and nginx started here shares PROXY_SECRET, one random value per test
process: the instances trust nginx's X-Forwarded-For as in production, and nothing else's.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FERRETDB_BIN = ROOT / ".build" / "ferretdb"
POSTGRES_SCRIPT = ROOT / "devtools" / "postgres.sh"
sys.path.insert(0, str(ROOT / "devtools"))
from render_nginx import render as _render_nginx  # noqa: E402 -- devtools is not a package

# nginx sends it (X-Proxy-Secret), the instances trust X-Forwarded-* only with it.
PROXY_SECRET = secrets.token_hex(16)
# The renderer with this process's secret (tests that render their own nginx use it).
render_nginx = functools.partial(_render_nginx, proxy_secret=PROXY_SECRET)

_HANDED_OUT: set[int] = set()


def database_pool(
    workers: int = 2, threads: int = 16, instances: int = 2, queue_workers: int = 2,
    queue_threads: int = 8,
) -> int:  # fmt: skip
    """FerretDB's pool_max_conns for a stack of `instances` x `workers` x `threads` and
    `queue_workers` WhatsApp queue workers of `queue_threads` (and a requeuer): the sum
    devtools/stack_env.sh makes (docs/ferretdb.md, the pool arithmetic): every thread
    that may talk to the database (5 beside those), 2 connections each, and 10 to spare."""
    queue = queue_workers * (queue_threads + 1)
    return 2 * (instances * workers * threads + 5 + queue) + 10


# The harness's FerretDB and PostgreSQL, sized for the end-to-end stack (2 instances of
# 2 workers x 16 threads) and whatever the tests open beside it.
FERRETDB_POOL_MAX_CONNS = database_pool()
POSTGRES_MAX_CONNECTIONS = FERRETDB_POOL_MAX_CONNS + 10


def free_port() -> int:
    """A free loopback port, never one handed out before in this process.

    A port is only reserved once its service binds it, so two services built before
    either starts (FerretDB and its PostgreSQL) could otherwise be given the same one.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Service:
    """A child process listening on one port; subclasses say how to launch it."""

    name = "service"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> None:
        log = self.log_path.open("ab")
        # A session of its own, so stop() can signal the whole process group.
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_port(self.port, proc=self.proc)
        except (RuntimeError, TimeoutError):
            self.stop()
            raise RuntimeError(f"{self.name} did not start; log:\n{self.log_tail()}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Postgres(Service):
    """A throw-away PostgreSQL cluster (devtools/postgres.sh --throwaway): FerretDB's backend.

    The first start runs initdb (about 1 s in all); later starts reuse the cluster (0.07 s).
    """

    name = "postgres"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port)
        if os.geteuid() == 0:
            # As root the server runs as the `postgres` user, which cannot enter pytest's
            # private (0700) temporary directories: the cluster gets a directory of its own
            # (the script hands it to that user), removed when this object goes.
            self.data_dir = Path(tempfile.mkdtemp(prefix="chatbot-postgres-"))
            weakref.finalize(self, shutil.rmtree, self.data_dir, ignore_errors=True)
            (workdir / "data").unlink(missing_ok=True)
            (workdir / "data").symlink_to(self.data_dir)
        else:
            self.data_dir = workdir / "data"

    @property
    def url(self) -> str:
        """The URL FerretDB's `-postgresql-url` takes."""
        return f"postgres://postgres@127.0.0.1:{self.port}/ferretdb"

    def command(self) -> list[str]:
        return ["bash", str(POSTGRES_SCRIPT), str(self.data_dir), str(self.port), "--throwaway"]

    def env(self) -> dict[str, str]:
        return {**os.environ, "POSTGRES_MAX_CONNECTIONS": str(POSTGRES_MAX_CONNECTIONS)}

    def start(self) -> None:
        super().start()
        # The port opens before the server accepts sessions ("starting up"): wait for those.
        deadline = time.monotonic() + 20
        while not self.ready():
            if time.monotonic() > deadline or self.proc is None or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} did not start; log:\n{self.log_tail()}")
            time.sleep(0.05)

    def ready(self) -> bool:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_isready"))
        command = [found[-1] if found else "pg_isready", "-q", "-h", "127.0.0.1"]
        command += ["-p", str(self.port), "-U", "postgres", "-d", "ferretdb"]
        return subprocess.run(command, check=False).returncode == 0

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> None:
        # INT is PostgreSQL's fast shutdown: clients are disconnected, not waited for.
        super().stop(sig, timeout)


class FerretDB(Service):
    """FerretDB on PostgreSQL: `postgresql_url` (a `Postgres.url`), else a cluster of its own.

    `sqlite=True` runs it on its SQLite backend instead (data in the workdir).
    `pool_max_conns`: its PostgreSQL pool (FERRETDB_POOL_MAX_CONNS unless given).
    """

    name = "ferretdb"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        postgresql_url: str | None = None,
        sqlite: bool = False,
        pool_max_conns: int = FERRETDB_POOL_MAX_CONNS,
    ) -> None:
        super().__init__(workdir, port)
        self.sqlite = sqlite
        self.postgres: Postgres | None = None  # the cluster of its own, when it has one
        if not sqlite and postgresql_url is None:
            self.postgres = Postgres(workdir / "postgres")
            postgresql_url = self.postgres.url
        self.postgresql_url = postgresql_url
        self.pool_max_conns = pool_max_conns

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        if not FERRETDB_BIN.exists():
            raise RuntimeError("FerretDB is not built: run `make setup`")
        backend = (
            [f"-data={self.workdir / 'data'}"]
            if self.sqlite
            else [f"-postgresql-url={self.postgresql_url}?pool_max_conns={self.pool_max_conns}"]
        )
        return [str(FERRETDB_BIN), f"-listen=127.0.0.1:{self.port}", *backend]

    def start(self) -> None:
        """Start its own cluster first (when it has one), then FerretDB."""
        if self.postgres is not None and (
            self.postgres.proc is None or self.postgres.proc.poll() is not None
        ):
            self.postgres.start()
        super().start()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Stop FerretDB, then its own cluster: the whole database is down."""
        super().stop(sig, timeout)
        if self.postgres is not None:
            self.postgres.stop(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        tail = super().log_tail(lines)
        if self.postgres is not None:
            tail += f"\n--- {self.postgres.name} ---\n{self.postgres.log_tail(lines)}"
        return tail


class Redis(Service):
    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            "redis-server",
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip


def init_db(app_env: dict[str, str], wait_s: float = 20.0) -> str:
    """`flask chatbot init-db` with the app's environment: the indexes, made once by one
    process before any instance starts, as `make run` and the deployments do (nothing in
    the instances creates them; chatbot/db/indexes.py says why). Returns its output."""
    env = dict(os.environ)
    env.update(app_env)
    env.setdefault("INSTANCE_ID", "init-db")
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "chatbot", "init-db",
         "--wait", str(wait_s)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=wait_s + 60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"init-db failed:\n{done.stdout}{done.stderr}")
    return done.stdout


class Gunicorn(Service):
    name = "gunicorn"

    def __init__(self, workdir: Path, instance_id: str, app_env: dict[str, str]) -> None:
        self.name = f"gunicorn-{instance_id}"
        super().__init__(workdir)
        self.instance_id = instance_id
        self.app_env = app_env

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PROXY_SECRET"] = PROXY_SECRET  # app_env may set its own (or "")
        env.update(self.app_env)
        env.update(INSTANCE_ID=self.instance_id, GUNICORN_BIND=f"127.0.0.1:{self.port}")
        # Its control socket and pid file beside its log, not in the repository's var/run.
        env.update(GUNICORN_RUN_DIR=str(self.workdir))
        return env

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


class Nginx(Service):
    name = "nginx"

    def __init__(self, workdir: Path, upstream_ports: list[int]) -> None:
        super().__init__(workdir)
        self.upstream_ports = upstream_ports

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        render_nginx(
            self.workdir,
            f"127.0.0.1:{self.port}",
            [f"127.0.0.1:{p}" for p in self.upstream_ports],
        )
        # -e stderr: never touch the system log directory, even before the config is read.
        return ["nginx", "-e", "stderr", "-p", f"{self.workdir}/", "-c", "nginx.conf"]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def http(
    method: str, url: str, body: dict | None = None, headers: dict | None = None, timeout=10.0
) -> Reply:
    """One HTTP request with the standard library; never raises on 4xx/5xx."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 -- loopback URLs built by the harness
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 -- loopback URLs built by the harness
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers), exc.read())


class GraphEmulator(Service):
    """The Graph API emulator (devtools/graph_emulator.py), posting webhooks to `webhook`."""

    name = "graph"

    def __init__(self, workdir: Path, webhook: str, args: list[str] | None = None) -> None:
        super().__init__(workdir)
        self.webhook = webhook
        self.args = args or []  # e.g. --app-secret, --token, --no-statuses

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        script = str(ROOT / "devtools" / "graph_emulator.py")
        return [
            sys.executable,
            script,
            "serve",
            "--port",
            str(self.port),
            "--webhook",
            self.webhook,
            *self.args,
        ]


class QueueWorker(Service):
    """A WhatsApp queue worker (`flask chatbot whatsapp-worker`); it listens on no port,
    so it is up once it says so in its log."""

    def __init__(self, workdir: Path, name: str, app_env: dict[str, str]) -> None:
        self.name = f"worker-{name}"
        super().__init__(workdir)
        self.app_env = app_env

    def env(self) -> dict[str, str]:
        return {**os.environ, "PROXY_SECRET": PROXY_SECRET, **self.app_env,
                "INSTANCE_ID": self.name}  # fmt: skip

    def command(self) -> list[str]:
        return [sys.executable, "-m", "flask", "--app", "wsgi", "chatbot", "whatsapp-worker"]

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 20
        while "whatsapp worker:" not in self.log_tail(200):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start; log:\n{self.log_tail()}")
            time.sleep(0.1)
