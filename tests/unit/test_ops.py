"""nginx's upstream state, the active checker's rules and the rolling restart's guard.

The rendered configurations are checked by nginx itself (`nginx -t`).
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbot.errors import ConfigError, RestartError
from chatbot.ops import checker, restart, upstreams


def nginx_t(prefix: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        upstreams.nginx_command(prefix, "-t"), capture_output=True, text=True, check=False
    )


needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")


def servers_block(text: str, group: str) -> str:
    return text.split(f"upstream {group} {{")[1].split("}")[0]


@needs_nginx
def test_the_rendered_configuration_passes_nginx_t(tmp_path):
    upstreams.render(tmp_path, "127.0.0.1:1", ["app1=127.0.0.1:2", "10.0.0.7:8000"], max_conns=8)
    done = nginx_t(tmp_path)
    assert done.returncode == 0, done.stderr


@needs_nginx
def test_a_drained_or_failing_instance_is_rendered_down(tmp_path):
    upstreams.render(tmp_path, "127.0.0.1:1", ["app1=127.0.0.1:2", "app2=127.0.0.1:3"])
    upstreams.change(
        tmp_path, lambda s: setattr(s.server("app1"), "drained", True), reload_nginx=False
    )
    text = (tmp_path / "nginx.conf").read_text()
    for group in ("chatbot", "chatbot_probes"):
        block = servers_block(text, group)
        assert "server 127.0.0.1:2 " in block and "fail_timeout=5s down;" in block
        assert "server 127.0.0.1:3 " in block and block.count(" down;") == 1
    assert nginx_t(tmp_path).returncode == 0
    state = json.loads((tmp_path / "upstreams.json").read_text())
    assert [s["in_rotation"] for s in state["servers"]] == [False, True]


def test_every_instance_failing_keeps_them_all_in_rotation(tmp_path):
    upstreams.render(tmp_path, "127.0.0.1:1", ["app1=127.0.0.1:2", "app2=127.0.0.1:3"])

    def fail(name):
        return lambda s: setattr(s.server(name), "healthy", False)

    _, state = upstreams.change(tmp_path, fail("app1"), reload_nginx=False)
    assert [state.in_rotation(s) for s in state.servers] == [False, True]
    _, state = upstreams.change(tmp_path, fail("app2"), reload_nginx=False)
    # Both fail (the shared database is down, say): nginx's passive checks decide.
    assert state.fail_open() and all(state.in_rotation(s) for s in state.servers)
    assert " down;" not in servers_block((tmp_path / "nginx.conf").read_text(), "chatbot")
    # A drained instance stays out even then: the operator asked for it.
    _, state = upstreams.change(
        tmp_path, lambda s: setattr(s.server("app1"), "drained", True), reload_nginx=False
    )
    assert [state.in_rotation(s) for s in state.servers] == [False, True]


def test_upstreams_are_addresses_or_named_addresses():
    assert upstreams.parse_upstream("10.0.0.5:8000") == ("10.0.0.5:8000", "10.0.0.5:8000")
    assert upstreams.parse_upstream("app1=10.0.0.5:8000") == ("app1", "10.0.0.5:8000")
    with pytest.raises(ValueError, match="NAME=ADDRESS"):
        upstreams.parse_upstream("=10.0.0.5:8000")


def test_only_the_idempotent_posts_are_resent_to_the_other_instance(tmp_path):
    """Chat turns (by clientMessageId) and WhatsApp webhooks (by message id); no other POST."""
    text = upstreams.render(tmp_path, "127.0.0.1:1", ["127.0.0.1:2"]).read_text()
    for path in ("/api/v1/chat/messages", "/webhooks/whatsapp"):
        block = text.split(f"location = {path} {{")[1].split("}")[0]
        assert "proxy_next_upstream error timeout non_idempotent;" in block
        assert "proxy_next_upstream_tries 2;" in block and "proxy_next_upstream_timeout" in block
    directives = [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]
    assert sum("non_idempotent" in line for line in directives) == 2


def test_operator_views_are_loopback_only(tmp_path):
    text = upstreams.render(tmp_path, "0.0.0.0:80", ["127.0.0.1:2"]).read_text()
    for path in ("/_ops/upstreams", "/_ops/checker"):
        block = text.split(f"location = {path} {{")[1].split("}")[0]
        assert "allow 127.0.0.1;" in block and "deny all;" in block


def test_checker_settings_default_to_the_design():
    config = checker.CheckerConfig.from_env({})
    assert (config.path, config.interval_s, config.timeout_s) == ("/health", 30.0, 5.0)
    assert (config.unhealthy_after, config.healthy_after) == (3, 2)
    custom = checker.CheckerConfig.from_env(
        {
            "HEALTHCHECK_INTERVAL_S": "2",
            "HEALTHCHECK_UNHEALTHY_AFTER": "5",
            "HEALTHCHECK_PATH": "/livez",
        }
    )
    assert (custom.interval_s, custom.unhealthy_after, custom.path) == (2.0, 5, "/livez")
    with pytest.raises(ConfigError, match="HEALTHCHECK_HEALTHY_AFTER"):
        checker.CheckerConfig.from_env({"HEALTHCHECK_HEALTHY_AFTER": "0"})


class Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        self.send_response(type(self).status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def instance() -> Iterator[tuple[str, type[Health]]]:
    handler = type("Instance", (Health,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_the_checker_marks_down_after_3_failures_and_up_after_2_successes(tmp_path, instance):
    address, handler = instance
    other = "127.0.0.1:9"  # discard port: refused
    upstreams.render(tmp_path, "127.0.0.1:1", [f"app1={address}", f"app2={other}"])
    run = checker.Checker(tmp_path, checker.CheckerConfig(interval_s=0.05, timeout_s=1))
    run.check_once()
    run.check_once()
    assert upstreams.load(tmp_path).server("app2").healthy  # 2 failures: not yet
    handler.status = 503  # app1 now fails too, from its third round on
    run.check_once()
    state = upstreams.load(tmp_path)
    assert not state.server("app2").healthy and state.server("app1").healthy
    assert not state.in_rotation(state.server("app2"))
    handler.status = 200
    run.check_once()
    status = checker.read_status(tmp_path)
    app2 = next(s for s in status["servers"] if s["name"] == "app2")
    assert app2["consecutive_failures"] == 4 and app2["in_rotation"] is False
    assert app2["last_transition"]["to"] == "unhealthy"
    assert app2["last_transition"]["reason"].startswith("3 failures in a row (last: Connection")
    assert app2["last_probe"]["error"] == "ConnectionRefusedError"
    assert status["checker"]["interval_s"] == 0.05 and status["checker"]["rounds"] == 4


def test_an_unhealthy_instance_needs_2_successes_in_a_row(tmp_path, instance):
    address, handler = instance
    upstreams.render(tmp_path, "127.0.0.1:1", [f"app1={address}", "app2=127.0.0.1:9"])
    upstreams.change(
        tmp_path, lambda s: setattr(s.server("app1"), "healthy", False), reload_nginx=False
    )
    run = checker.Checker(tmp_path, checker.CheckerConfig(timeout_s=1))
    run.check_once()
    assert not upstreams.load(tmp_path).server("app1").healthy
    handler.status = 503
    run.check_once()
    handler.status = 200
    run.check_once()
    assert not upstreams.load(tmp_path).server("app1").healthy  # the 503 broke the run
    run.check_once()
    assert upstreams.load(tmp_path).server("app1").healthy


def test_a_rolling_restart_never_drains_the_last_instance_in_rotation(tmp_path):
    upstreams.render(tmp_path, "127.0.0.1:1", ["app1=127.0.0.1:2", "app2=127.0.0.1:3"])
    upstreams.change(
        tmp_path, lambda s: setattr(s.server("app2"), "healthy", False), reload_nginx=False
    )
    with pytest.raises(RestartError, match="no other healthy instance"):
        restart.drain(tmp_path, "app1", timeout=1)
    assert not upstreams.load(tmp_path).server("app1").drained


def test_the_restart_cli_refuses_unknown_instances(tmp_path, capsys):
    upstreams.render(tmp_path, "127.0.0.1:1", ["app1=127.0.0.1:2"])
    code = restart.main(["rolling", "app9", "--prefix", str(tmp_path), "--stop", "true"])
    assert code == 1 and "app9" in capsys.readouterr().out
    assert not upstreams.load(tmp_path).server("app1").drained
