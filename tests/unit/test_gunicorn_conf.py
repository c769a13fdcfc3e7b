"""gunicorn.conf.py reads its knobs from the environment."""

import multiprocessing
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chatbot.settings import Settings

CONF = str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py")


def load(monkeypatch, **env):
    # Loading the file chooses the metrics directory in os.environ: undone with the rest.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(CONF)


def test_prometheus_client_writes_multiprocess_files_in_a_gunicorn_process(tmp_path):
    # prometheus_client chooses its value class when first imported: the file must set
    # the directory before it imports chatbot.metrics, or the workers it forks would
    # keep their figures to themselves.
    script = (
        "import runpy, os; runpy.run_path('gunicorn.conf.py');"
        "from prometheus_client import values;"
        "print(values.ValueClass.__name__, os.environ['PROMETHEUS_MULTIPROC_DIR'])"
    )
    env = {"PATH": "/usr/bin:/bin", "GUNICORN_RUN_DIR": str(tmp_path), "INSTANCE_ID": "app7"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(CONF).parent, env=env,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    value_class, path = done.stdout.split()
    assert value_class == "MmapedValue"  # MutexValue: one process's figures only
    assert Path(path).name.startswith("app7-")


def test_defaults(monkeypatch):
    monkeypatch.delenv("GUNICORN_WORKER_CLASS", raising=False)
    monkeypatch.delenv("GUNICORN_THREADS", raising=False)
    conf = load(monkeypatch)
    assert conf["worker_class"] == "gthread"
    assert conf["threads"] == 16
    assert conf["preload_app"] is False
    # gunicorn trusts nobody's scheme headers; the app trusts nginx by its secret.
    assert conf["forwarded_allow_ips"] == ""


def test_the_instance_is_named_as_the_app_names_it(monkeypatch):
    monkeypatch.delenv("INSTANCE_ID", raising=False)
    conf = load(monkeypatch)
    # Unset: the host name, as in /health (Settings.from_env).
    assert conf["proc_name"] == "chatbot-" + socket.gethostname()
    assert Settings.from_env({}).instance_id == socket.gethostname()
    assert load(monkeypatch, INSTANCE_ID="app7")["proc_name"] == "chatbot-app7"


def test_design_defaults(monkeypatch):
    for name in ("WEB_CONCURRENCY", "GUNICORN_MAX_WORKER_RSS_MB"):
        monkeypatch.delenv(name, raising=False)
    conf = load(monkeypatch)
    assert conf["workers"] == multiprocessing.cpu_count()  # one worker per CPU
    assert conf["max_worker_rss_mb"] == 1024  # the design's 1 GiB per worker


def test_each_instance_has_its_own_control_socket_and_pid_file(monkeypatch, tmp_path):
    for name in ("GUNICORN_CONTROL_SOCKET", "GUNICORN_PIDFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GUNICORN_RUN_DIR", str(tmp_path / "run"))
    one = load(monkeypatch, INSTANCE_ID="app1", GUNICORN_BIND="127.0.0.1:8001")
    two = load(monkeypatch, INSTANCE_ID="app2", GUNICORN_BIND="127.0.0.1:8002")
    assert one["control_socket"] == str(tmp_path / "run" / "gunicorn-app1-8001.ctl")
    assert one["pidfile"] == str(tmp_path / "run" / "gunicorn-app1-8001.pid")
    assert two["control_socket"] != one["control_socket"] and two["pidfile"] != one["pidfile"]
    assert (tmp_path / "run").is_dir()  # gunicorn refuses a pid file in a missing directory
    assert one["control_socket_mode"] == 0o600
    explicit = load(
        monkeypatch,
        GUNICORN_CONTROL_SOCKET=str(tmp_path / "a" / "app1.ctl"),
        GUNICORN_PIDFILE=str(tmp_path / "a" / "app1.pid"),
    )
    assert explicit["control_socket"] == str(tmp_path / "a" / "app1.ctl")
    assert explicit["pidfile"] == str(tmp_path / "a" / "app1.pid")


class FakeListener:
    closed = False

    def close(self):
        self.closed = True


class FakeGthreadWorker:
    """What post_worker_init wraps of gunicorn's gthread worker."""

    def __init__(self):
        self.alive = True
        self.sockets = [FakeListener()]
        self.accepting = []

    def set_accept_enabled(self, enabled):
        self.accepting.append(enabled)


def test_a_stopping_worker_closes_its_listening_socket_at_once(monkeypatch):
    conf = load(monkeypatch)
    worker = FakeGthreadWorker()
    conf["post_worker_init"](worker)
    worker.set_accept_enabled(False)  # at worker_connections while alive: keep the socket
    assert worker.accepting == [False] and not worker.sockets[0].closed
    worker.set_accept_enabled(True)
    worker.alive = False  # TERM, HUP, the memory guard or max_requests
    worker.set_accept_enabled(False)
    assert worker.accepting == [False, True, False]  # unregistered from the poller first
    assert worker.sockets[0].closed


def test_the_gthread_worker_still_has_what_the_hook_wraps():
    # The hook relies on gthread internals; an upgrade that drops them must fail here.
    import inspect

    from gunicorn.workers.gthread import ThreadWorker

    source = inspect.getsource(ThreadWorker.run)
    assert "self.set_accept_enabled(False)" in source
    assert "for s in self.sockets:" in source


def test_sync_workers_are_left_alone(monkeypatch):
    conf = load(monkeypatch)
    worker = type("SyncWorker", (), {"alive": True})()
    conf["post_worker_init"](worker)  # no set_accept_enabled: nothing to wrap
    assert not hasattr(worker, "set_accept_enabled")


def test_gunicorn_check_config_accepts_the_file(tmp_path):
    root = Path(CONF).parent
    env = {"PATH": "/usr/bin:/bin", "GUNICORN_RUN_DIR": str(tmp_path)}
    ok = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "-c", CONF, "wsgi:app"],
        cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "-c", CONF, "wsgi:app"],
        cwd=root, env={**env, "GUNICORN_THREADS": "many"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "GUNICORN_THREADS must be an integer >= 1, got 'many'" in bad.stderr


def test_sync_workers_get_one_thread(monkeypatch):
    # gunicorn would silently run gthread for "sync" with threads > 1.
    conf = load(monkeypatch, GUNICORN_WORKER_CLASS="sync", GUNICORN_THREADS="8")
    assert conf["threads"] == 1


def test_knobs_come_from_the_environment(monkeypatch):
    conf = load(
        monkeypatch, WEB_CONCURRENCY="3", GUNICORN_THREADS="16", GUNICORN_BIND="127.0.0.1:9001"
    )
    assert (conf["workers"], conf["threads"], conf["bind"]) == (3, 16, "127.0.0.1:9001")


class FakeWorker:
    """Just what the post_request hook reads of a gunicorn worker."""

    def __init__(self, nr):
        self.nr, self.alive, self.pid = nr, True, 1
        self.log = type("Log", (), {"warning": lambda *a: None})()


def test_a_worker_over_its_memory_limit_is_retired_gracefully(monkeypatch):
    conf = load(monkeypatch, GUNICORN_MAX_WORKER_RSS_MB="1")  # this test process uses more
    checked, skipped = FakeWorker(nr=50), FakeWorker(nr=51)
    conf["post_request"](checked, None, None, None)
    conf["post_request"](skipped, None, None, None)
    assert checked.alive is False  # finishes in-flight requests, then the master replaces it
    assert skipped.alive is True  # only every 50th request pays for the check


def test_the_memory_guard_can_be_turned_off(monkeypatch):
    conf = load(monkeypatch, GUNICORN_MAX_WORKER_RSS_MB="0")
    worker = FakeWorker(nr=50)
    conf["post_request"](worker, None, None, None)
    assert worker.alive is True


def test_a_worker_queues_a_bounded_number_of_requests(monkeypatch):
    monkeypatch.delenv("GUNICORN_WORKER_CONNECTIONS", raising=False)
    conf = load(monkeypatch, GUNICORN_THREADS="16")
    # gunicorn's default (1000) would let a busy worker queue hundreds of requests.
    assert conf["worker_connections"] == 16 + 64
    conf = load(monkeypatch, GUNICORN_WORKER_CONNECTIONS="40")
    assert conf["worker_connections"] == 40


def render_nginx_module():
    import sys

    devtools = str(Path(CONF).parent / "devtools")
    if devtools not in sys.path:
        sys.path.insert(0, devtools)
    import render_nginx

    return render_nginx


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "8"},
        {"WEB_CONCURRENCY": "2", "GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "8"},
    ],
)
def test_nginx_admits_what_gunicorn_serves_at_once(monkeypatch, env):
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_WORKER_CLASS"):
        monkeypatch.delenv(name, raising=False)
    conf = load(monkeypatch, **env)
    capacity = render_nginx_module().instance_capacity(env)
    assert capacity == conf["workers"] * conf["threads"]


def test_rendered_upstreams_carry_max_conns_and_probes_do_not(tmp_path, monkeypatch):
    render = render_nginx_module().render
    monkeypatch.setenv("NGINX_MAX_CONNS", "7")
    text = render(tmp_path, "127.0.0.1:1", ["127.0.0.1:2", "127.0.0.1:3"]).read_text()
    assert "server 127.0.0.1:2 max_conns=7 max_fails=1 fail_timeout=5s;" in text
    assert "server 127.0.0.1:3 max_conns=7 max_fails=1 fail_timeout=5s;" in text
    probes = text.split("upstream chatbot_probes {")[1].split("}")[0]
    assert "server 127.0.0.1:2 max_fails=1" in probes and "max_conns" not in probes
    assert "@UPSTREAMS@" not in text and "@PROBE_UPSTREAMS@" not in text
    explicit = render(tmp_path, "127.0.0.1:1", ["127.0.0.1:2"], max_conns=0).read_text()
    assert "max_conns=0" in explicit  # nginx: no limit


def test_every_variable_gunicorn_and_the_ops_tools_read_is_documented():
    import re

    from chatbot.settings import CheckerSettings, GunicornSettings, fields_of, variable_of

    root = Path(CONF).parent
    documented = set(
        re.findall(r"`([A-Z][A-Z0-9_]+)`", (root / "docs" / "configuration.md").read_text())
    )
    names = {
        variable_of(field, name)
        for cls in (GunicornSettings, CheckerSettings)
        for name, field in fields_of(cls).items()
    }
    # What the files read outside the settings classes.
    read = re.compile(r"""(?:environ\.get|env\.get)\(\s*"([A-Z][A-Z0-9_]+)\"""")
    sources = [root / "gunicorn.conf.py", *sorted((root / "chatbot" / "ops").glob("*.py"))]
    names |= {name for path in sources for name in read.findall(path.read_text())}
    assert {"GUNICORN_BIND", "GUNICORN_CONTROL_SOCKET", "HEALTHCHECK_INTERVAL_S"} <= names
    assert "NGINX_MAX_CONNS" in names
    assert sorted(names - documented) == []


def test_gunicorn_conf_reads_no_variable_by_hand():
    # Every knob goes through GunicornSettings, so a malformed one is named.
    text = Path(CONF).read_text()
    assert "os.environ" not in text and "_env_int" not in text


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEB_CONCURRENCY", "x", "WEB_CONCURRENCY must be an integer >= 1, got 'x'"),
        ("GUNICORN_THREADS", "0", "GUNICORN_THREADS must be an integer >= 1, got '0'"),
        ("GUNICORN_TIMEOUT", "30s", "GUNICORN_TIMEOUT must be an integer >= 0, got '30s'"),
        ("GUNICORN_ACCESS_LOG", "yes", "GUNICORN_ACCESS_LOG must be 0 or 1, got 'yes'"),
        ("LOG_LEVEL", "chatty", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("GUNICORN_FORWARDED_ALLOW_IPS", "nginx", "GUNICORN_FORWARDED_ALLOW_IPS must be"),
    ],
)
def test_a_malformed_knob_stops_gunicorn_naming_the_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        runpy.run_path(CONF)
    assert str(info.value).startswith(f"gunicorn.conf.py: {message}")


def test_nginx_capacity_is_validated_like_gunicorn():
    from chatbot.errors import ConfigError
    from chatbot.ops.upstreams import default_max_conns, instance_capacity

    with pytest.raises(ConfigError, match=r"^WEB_CONCURRENCY must be an integer >= 1"):
        instance_capacity({"WEB_CONCURRENCY": "lots"})
    with pytest.raises(ConfigError, match=r"^NGINX_MAX_CONNS must be an integer >= 0"):
        default_max_conns({"NGINX_MAX_CONNS": "-1"})
    assert default_max_conns({"NGINX_MAX_CONNS": "0"}) == 0


def test_a_stale_pid_file_is_removed_and_a_live_instance_kept(monkeypatch, tmp_path):
    import os

    pidfile = tmp_path / "app1.pid"
    monkeypatch.setenv("GUNICORN_PIDFILE", str(pidfile))
    # A killed instance's pid, now another process's (this test's pytest): not ours.
    pidfile.write_text(f"{os.getpid()}\n")
    load(monkeypatch, INSTANCE_ID="app1")
    assert not pidfile.exists()
    # A live gunicorn of the same instance keeps it (gunicorn then refuses a second copy).
    live = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "gunicorn"],
        env={**os.environ, "INSTANCE_ID": "app1"},
    )
    try:
        pidfile.write_text(f"{live.pid}\n")
        load(monkeypatch, INSTANCE_ID="app1")
        assert pidfile.exists()
        load(monkeypatch, INSTANCE_ID="app2")  # another instance's process: stale for app2
        assert not pidfile.exists()
    finally:
        live.kill()
        live.wait()
