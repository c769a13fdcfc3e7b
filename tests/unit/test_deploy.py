"""The systemd units under deploy/ pass `systemd-analyze verify` (where systemd is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd not installed")
def test_the_systemd_units_verify(tmp_path):
    # Installed under /opt/chatbot in production; here the repository plays that part.
    for unit in UNITS.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/chatbot", str(ROOT)))
    template = tmp_path / "chatbot@.service"
    (tmp_path / "chatbot@app1.service").write_text(template.read_text())
    worker = tmp_path / "chatbot-whatsapp@.service"
    (tmp_path / "chatbot-whatsapp@1.service").write_text(worker.read_text())
    names = ["chatbot@app1.service", "chatbot-sweeper.service", "chatbot-nginx.service"]
    names += ["chatbot-whatsapp@1.service"]
    names += ["chatbot-checker.service", "chatbot-init-db.service", "chatbot.target"]
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *[f"./{n}" for n in names]],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "SYSTEMD_LOG_LEVEL": "warning"},
    )  # fmt: skip
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_every_unit_restarts_on_exit_and_stops_gracefully():
    instance = (UNITS / "chatbot@.service").read_text()
    assert "Restart=always" in instance and "KillSignal=SIGTERM" in instance
    assert "ExecReload=/bin/kill -HUP $MAINPID" in instance
    assert "GUNICORN_RUN_DIR=/run/chatbot/%i" in instance  # a control socket per instance
    nginx = (UNITS / "chatbot-nginx.service").read_text()
    assert "KillSignal=SIGQUIT" in nginx and "-s reload" in nginx
    units = ("chatbot-sweeper.service", "chatbot-checker.service", "chatbot-nginx.service")
    for unit in (*units, "chatbot-whatsapp@.service"):
        assert "Restart=always" in (UNITS / unit).read_text()


def test_the_indexes_are_made_once_before_the_instances_and_the_sweeper_start():
    init = (UNITS / "chatbot-init-db.service").read_text()
    assert "Type=oneshot" in init and "RemainAfterExit=yes" in init
    assert "chatbot init-db --wait" in init and "Restart=on-failure" in init
    for unit in ("chatbot@.service", "chatbot-sweeper.service", "chatbot-whatsapp@.service"):
        text = (UNITS / unit).read_text()
        assert "Requires=chatbot-init-db.service" in text, unit
        assert "After=network-online.target chatbot-init-db.service" in text, unit
