"""The local stack signs tokens with a random key of its own (devtools/secret_key.sh)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from chatbot.settings import DEV_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]


def secret_key(var: Path, preset: str | None = None) -> str:
    env = {"PATH": os.environ["PATH"], "STACK_VAR": str(var)}
    if preset is not None:
        env["SECRET_KEY"] = preset
    done = subprocess.run(
        ["bash", "-c", 'set -euo pipefail; source devtools/secret_key.sh; printf %s "$SECRET_KEY"'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout


def test_a_random_key_is_generated_once_into_var(tmp_path):
    var = tmp_path / "var"
    first = secret_key(var)
    assert len(first) == 64 and first != DEV_SECRET_KEY
    path = var / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first
    assert secret_key(var) == first  # kept across runs
    assert secret_key(tmp_path / "other") != first  # another stack, another key


def test_a_secret_key_from_the_environment_wins(tmp_path):
    assert secret_key(tmp_path / "var", "mine") == "mine"
    assert not (tmp_path / "var" / "secret_key").exists()
