"""gunicorn.conf.py reads its knobs from the environment."""

import runpy
from pathlib import Path

import pytest

CONF = str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py")


def load(monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(CONF)


def test_defaults(monkeypatch):
    monkeypatch.delenv("GUNICORN_WORKER_CLASS", raising=False)
    monkeypatch.delenv("GUNICORN_THREADS", raising=False)
    conf = load(monkeypatch)
    assert conf["worker_class"] == "gthread"
    assert conf["threads"] == 16
    assert conf["preload_app"] is False
    assert conf["forwarded_allow_ips"] == "127.0.0.1,::1"


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
