"""Render nginx/nginx.conf.template for the local stack or the test harness.

    python devtools/render_nginx.py --prefix var/nginx --listen 127.0.0.1:8080 \
        --upstream 127.0.0.1:8001 --upstream 127.0.0.1:8002
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "nginx" / "nginx.conf.template"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def render(prefix: Path, listen: str, upstreams: list[str], user: str | None = None) -> Path:
    """Write PREFIX/nginx.conf (and the temp dirs nginx needs); return its path."""
    prefix = prefix.resolve()
    for name in TEMP_DIRS:
        (prefix / name).mkdir(parents=True, exist_ok=True)
    servers = "\n        ".join(f"server {u} max_fails=1 fail_timeout=5s;" for u in upstreams)
    # A root master hands its workers to `user`. The local stack and the tests keep
    # their files in private directories (pytest's are 0700), so by default the
    # workers stay the invoking user; production passes a dedicated one (www-data).
    # A non-root master cannot switch users at all.
    user_line = f"user {user or 'root'};" if os.geteuid() == 0 else ""
    text = TEMPLATE.read_text()
    for token, value in {
        "@PREFIX@": str(prefix),
        "@LISTEN@": listen,
        "@UPSTREAMS@": servers,
        "@USER_LINE@": user_line,
    }.items():
        text = text.replace(token, value)
    out = prefix / "nginx.conf"
    out.write_text(text)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", action="append", required=True)
    parser.add_argument("--user", help="worker user when started as root (e.g. www-data)")
    args = parser.parse_args()
    print(render(args.prefix, args.listen, args.upstream, args.user))


if __name__ == "__main__":
    main()
