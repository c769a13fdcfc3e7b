"""gunicorn settings for chatbot, written for the operator who tunes them.

Every knob reads an environment variable first, so one file serves laptops and
servers. Start with: gunicorn -c gunicorn.conf.py wsgi:app
The variables are read and validated by chatbot.settings.GunicornSettings (the same way
as the app's): a malformed one stops gunicorn with a message naming it.
Hooks say which process they run in: the master (arbiter) or a worker.
"""

import socket
import sys
from pathlib import Path

import psutil

from chatbot import metrics_dir
from chatbot.errors import ConfigError
from chatbot.logs import LOG_FORMAT, RENAME_FIELDS
from chatbot.settings import GunicornSettings

try:
    _settings = GunicornSettings.from_env()
except ConfigError as exc:
    # One line naming the variable, instead of a traceback from inside gunicorn.
    sys.exit(f"gunicorn.conf.py: {exc}")

# This instance's metrics directory, chosen before prometheus_client is first imported
# (it decides then whether to write the multiprocess files): by chatbot.metrics, just
# below. The workers and the collector inherit it (docs/monitoring.md).
metrics_dir.choose(_settings.instance_id, [_settings.bind])
from chatbot import metrics  # noqa: E402 -- after the metrics directory is chosen

# --- Socket ---------------------------------------------------------------
# Where this instance listens. Keep it on loopback: nginx is the only client.
bind = _settings.bind
# Connections the kernel holds until a worker accepts them. Not where overload
# waits: nginx admits at most workers x threads requests to this instance at once
# (max_conns, nginx/nginx.conf.template) and refuses the rest at once, so only that
# many (plus its idle keep-alive connections) are ever open here. Kept large on
# purpose: an overflowing backlog drops connection attempts, which nginx only notices
# after proxy_connect_timeout (1 s), a slow failure instead of a fast one.
backlog = _settings.backlog

# --- Workers --------------------------------------------------------------
# One worker process per CPU: Python runs one thread at a time per process.
workers = _settings.workers
# Threaded workers overlap the waits on MongoDB and Redis inside each process and
# keep nginx's upstream connections alive (sync workers close every connection).
# Measured in docs/performance.md: threads x workers bounds in-flight requests.
worker_class = _settings.worker_class
# Only gthread uses threads: gunicorn silently turns "sync" with threads > 1 into
# gthread, so the thread count is forced to 1 for any other worker class.
threads = _settings.worker_threads
# gthread: the connections one worker holds at once (in flight, waiting for a
# thread, or idle keep-alive). While its threads are busy a gthread worker still
# accepts and queues the requests; at this limit it stops accepting, and another
# worker takes the connection. So at most worker_connections - threads requests
# wait in one worker (gunicorn's default, 1000, let hundreds wait, for up to
# nginx's 35 s). nginx's max_conns already keeps in-flight requests at workers x
# threads per instance: requests wait here only when nginx's kept-alive connections
# land unevenly on the workers. The 64 beyond the threads leave room for those idle
# connections (nginx keeps up to 32 per nginx worker process): with too little, a
# worker full of idle connections stops accepting while its threads have nothing
# to do. Other worker classes ignore it.
worker_connections = _settings.connections_per_worker
# A worker silent for this long is killed and replaced. Keep it well above the
# MongoDB and Redis timeouts so an outage turns into 503s, not killed workers.
timeout = _settings.timeout
# Seconds a worker gets to finish in-flight requests after TERM or a reload.
graceful_timeout = _settings.graceful_timeout
# Idle seconds an nginx keepalive connection is held. Must exceed nginx's
# upstream keepalive_timeout (4 s in nginx/) so gunicorn never closes first.
keepalive = _settings.keepalive
# Recycle each worker after this many requests (plus jitter, so they do not all
# restart together) to bound slow leaks. 0 disables. Kept high on purpose: a
# recycled worker serves nothing while the next one boots, and at 10000 the
# benchmark saw workers recycle every few seconds under load (docs/performance.md);
# the memory guard below retires a worker that really grows.
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter
# Retire a worker gracefully once its resident memory passes this many MiB
# (gunicorn has no memory limit of its own). 0 disables. The default is the design's
# per-worker limit, 1 GiB: far above what a worker uses (about 100 MiB), so only a
# real leak trips it. A retired worker finishes its in-flight requests first.
max_worker_rss_mb = _settings.max_worker_rss_mb
# Import the app in each worker, after the fork: PyMongo clients must not cross a fork.
preload_app = False

# --- Proxy ----------------------------------------------------------------
# gunicorn's own trust of forwarded headers: the peers whose X-Forwarded-Proto sets the
# request's scheme. Empty by default, nobody: an address says nothing about who sends
# (any process on nginx's host shares it). The app trusts X-Forwarded-For/-Proto/-Host
# only on requests carrying nginx's PROXY_SECRET (chatbot/proxy.py, docs/deployment.md).
forwarded_allow_ips = _settings.forwarded_allow_ips
proc_name = "chatbot-" + _settings.instance_id

# --- Control socket and pid file --------------------------------------------
# Each instance has its own: gunicorn's default control socket is one per user
# (~/.gunicorn/gunicorn.ctl), which every instance on the machine would open in turn,
# each unlinking the previous one's. `gunicornc -s <socket> -c "show workers"` talks
# to one instance; the pid file is where to send HUP/TERM/TTIN/TTOU. The default names
# carry the instance id and the port, so two instances (or a test run beside
# `make run`) never share one; the local stack names them var/run/app1.ctl etc.
_ROOT = Path(__file__).resolve().parent
_port = bind.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
_run_dir = Path(_settings.run_dir or _ROOT / "var" / "run")
_run_name = f"gunicorn-{_settings.instance_id}-{_port}"
control_socket = _settings.control_socket or str(_run_dir / f"{_run_name}.ctl")
# 0600: only the service's user may reload or stop it through the socket.
control_socket_mode = 0o600
pidfile = _settings.pidfile or str(_run_dir / f"{_run_name}.pid")
for _path in (control_socket, pidfile):
    Path(_path).parent.mkdir(parents=True, exist_ok=True)


def _remove_stale_pidfile(path: str, instance_id: str) -> None:
    """Forget the pid file of an instance that was killed (SIGKILL leaves it behind).

    gunicorn refuses to start while the pid in it is alive, and after a kill that pid
    may have been reused by any process (a worker of another instance, say): the
    supervisor would then retry this instance for ever. Kept when it names a live
    gunicorn process of this same instance (INSTANCE_ID in its environment): a second
    copy must not start, and a HUP re-reads this file in the running master.
    """
    try:
        pid = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return
    try:
        process = psutil.Process(pid)
        ours = "gunicorn" in " ".join(process.cmdline())
        # Its INSTANCE_ID as GunicornSettings read it: unset or blank is the host name.
        if ours and (process.environ().get("INSTANCE_ID") or socket.gethostname()) == instance_id:
            return
    except psutil.Error:
        pass
    Path(path).unlink(missing_ok=True)


_remove_stale_pidfile(pidfile, _settings.instance_id)

# --- Logging --------------------------------------------------------------
# nginx writes the access log (with $request_id); gunicorn's would duplicate it.
# GUNICORN_ACCESS_LOG=1 turns gunicorn's on (JSON, on stdout) for debugging.
access_log_on = _settings.access_log
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}i)s'
loglevel = _settings.log_level.lower()
# gunicorn's own messages use the app's JSON format on stdout.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": LOG_FORMAT,
            "rename_fields": RENAME_FIELDS,
        }
    },
    "filters": {"context": {"()": "chatbot.logs.RequestContextFilter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["context"],
            "stream": "ext://sys.stdout",
        }
    },
    # The app adds its own root handler in each worker (chatbot.logs.configure_logging).
    "root": {"level": loglevel.upper(), "handlers": []},
    "loggers": {
        "gunicorn.error": {"handlers": ["stdout"], "level": loglevel.upper(), "propagate": False},
        "gunicorn.access": {
            "handlers": ["stdout"],
            "level": "INFO" if access_log_on else "WARNING",
            "propagate": False,
        },
    },
}


# --- Hooks ----------------------------------------------------------------
def post_request(worker, req, environ, resp):
    """Worker process: retire this worker gracefully when it has grown too large."""
    # Every 50th request: memory grows slowly, and this runs on the request path.
    if not max_worker_rss_mb or worker.nr % 50:
        return
    rss_mb = psutil.Process().memory_info().rss / 2**20
    if rss_mb > max_worker_rss_mb and worker.alive:
        worker.log.warning(
            "worker %s uses %.0f MiB > %s MiB; retiring it", worker.pid, rss_mb, max_worker_rss_mb
        )
        # alive=False lets in-flight requests finish, then the master forks a fresh worker.
        worker.alive = False


def post_worker_init(worker):
    """Worker process: once stopping, close the listening socket at once.

    gthread stops accepting when told to stop (TERM from a stopping master, a HUP, the
    memory guard, max_requests) but keeps its copy of the listening socket open until
    it exits, up to graceful_timeout later. When the whole instance stops, the kernel
    keeps completing connections on that socket meanwhile (nginx's connect succeeds)
    and nobody ever accepts them: nginx's requests hang, then fail. Closed at once, the
    socket refuses new connections, and nginx fails over at connect time. While the
    master lives (HUP, a retired worker) its copy and the other workers' keep the port
    open, so closing one worker's copy loses nothing. Other worker classes (sync) hold
    the socket for at most the one request they are serving.
    """
    set_accept_enabled = getattr(worker, "set_accept_enabled", None)
    if set_accept_enabled is None:
        return

    def stop_accepting_and_close(enabled: bool) -> None:
        set_accept_enabled(enabled)  # unregisters the listeners from the poller first
        if not enabled and not worker.alive:
            for listener in worker.sockets:
                listener.close()

    worker.set_accept_enabled = stop_accepting_and_close


def when_ready(server):
    """Master process, once per start: start the instance's one metrics collector.

    No index creation here: `flask chatbot init-db` makes them once, before the instances
    start (the stack's `init` step, chatbot-init-db.service); every master creating them
    at once, while the first requests arrive, is what wedged FerretDB (chatbot/db/indexes.py).
    """
    metrics.start_collector(server)


# --- Metrics hooks (chatbot/metrics.py, docs/monitoring.md) ------------------
def on_starting(server):
    """Master, before anything else: this instance's metrics directory, emptied."""
    metrics.on_starting(server)


def child_exit(server, worker):
    """Master, after a worker exited: drop that worker's live gauges (in flight, memory)."""
    metrics.child_exit(server, worker)


def on_exit(server):
    """Master, at shutdown: stop the metrics collector, remove its default directory."""
    metrics.on_exit(server)
