"""nginx's proxy headers are set once, at server level, and no location drops them."""

from __future__ import annotations

import re
import shutil
import stat
from pathlib import Path

import pytest

from chatbot.errors import ConfigError
from chatbot.ops import upstreams

TEMPLATE = Path(__file__).resolve().parents[2] / "nginx" / "nginx.conf.template"
FORWARDED = ("X-Request-Id", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host")


def _without_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def _blocks(text: str, opener: str) -> list[tuple[str, str]]:
    """(header, body) of every `opener ... { ... }` block, braces matched."""
    found = []
    for match in re.finditer(rf"^\s*{opener}\b([^{{;]*)\{{", text, re.MULTILINE):
        depth, i = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        found.append((match.group(1).strip(), text[match.end() : i - 1]))
    return found


def test_no_location_sets_a_proxy_header_of_its_own():
    # One proxy_set_header in a location would drop every server-level one there.
    text = _without_comments(TEMPLATE.read_text())
    locations = _blocks(text, "location")
    assert len(locations) >= 5
    for header, body in locations:
        assert "proxy_set_header" not in body, f"location {header} sets its own proxy headers"
        assert "include" not in body, f"location {header} includes a file"


def test_the_server_block_sets_every_forwarded_header_and_the_secret():
    text = _without_comments(TEMPLATE.read_text())
    [(_, server)] = _blocks(text, "server")
    for _, body in _blocks(server, "location"):
        server = server.replace(body, "")
    for name in FORWARDED:
        assert re.search(rf"^\s*proxy_set_header {name} \S+;", server, re.MULTILINE), name
    assert "include @PROXY_SECRET_CONF@;" in server
    assert "proxy_http_version 1.1;" in server


def test_the_secret_file_is_private_and_kept_by_later_renders(tmp_path):
    secret = "a" * 32
    conf = upstreams.render(tmp_path, "127.0.0.1:1", ["app1=127.0.0.1:2"], proxy_secret=secret)
    path = tmp_path / upstreams.SECRET_FILE
    assert f"include {path.resolve()};" in conf.read_text()
    assert f'proxy_set_header X-Proxy-Secret "{secret}";' in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret not in (tmp_path / upstreams.STATE_FILE).read_text()  # served on /_ops
    # The checker and rolling restarts re-render without knowing the secret.
    upstreams.change(tmp_path, lambda s: setattr(s.servers[0], "drained", True), reload_nginx=False)
    assert f'"{secret}"' in path.read_text()


def test_without_a_secret_nginx_sends_an_empty_one(tmp_path, monkeypatch):
    # An empty value makes nginx drop the header: a client's forged one never passes.
    monkeypatch.delenv("PROXY_SECRET", raising=False)
    upstreams.render(tmp_path, "127.0.0.1:1", ["127.0.0.1:2"])
    assert 'proxy_set_header X-Proxy-Secret "";' in (tmp_path / upstreams.SECRET_FILE).read_text()
    monkeypatch.setenv("PROXY_SECRET", "b" * 20)
    upstreams.render(tmp_path, "127.0.0.1:1", ["127.0.0.1:2"])
    assert f'"{"b" * 20}"' in (tmp_path / upstreams.SECRET_FILE).read_text()


def test_a_secret_nginx_could_not_quote_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="PROXY_SECRET"):
        upstreams.render(tmp_path, "127.0.0.1:1", ["127.0.0.1:2"], proxy_secret='x" ; evil ' * 3)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx")
def test_nginx_accepts_the_rendered_configuration(tmp_path):
    upstreams.render(tmp_path, "127.0.0.1:1", ["127.0.0.1:2"], proxy_secret="c" * 32)
    upstreams.check_config(tmp_path)
