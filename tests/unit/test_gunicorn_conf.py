"""gunicorn.conf.py reads its knobs from the environment."""

import runpy
from pathlib import Path

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
