"""Render nginx/nginx.conf.template for the local stack or the test harness.

    python devtools/render_nginx.py --prefix var/nginx --listen 127.0.0.1:8080 \
        --upstream 127.0.0.1:8001 --upstream 127.0.0.1:8002 [--max-conns 32]

Each instance admits at most `max_conns` requests at once (nginx's `max_conns`); the
default is its capacity, gunicorn workers x threads, read from the same environment
variables and defaults as gunicorn.conf.py (NGINX_MAX_CONNS overrides; 0 = no limit).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from collections.abc import Mapping
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "nginx" / "nginx.conf.template"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def instance_capacity(env: Mapping[str, str] | None = None) -> int:
    """Requests one gunicorn instance serves at once: workers x threads (gunicorn.conf.py)."""
    env = os.environ if env is None else env
    workers = int(env.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
    gthread = (env.get("GUNICORN_WORKER_CLASS") or "gthread") == "gthread"
    threads = int(env.get("GUNICORN_THREADS") or 16) if gthread else 1
    return workers * threads


def default_max_conns(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    configured = env.get("NGINX_MAX_CONNS", "").strip()
    return int(configured) if configured else instance_capacity(env)


def render(
    prefix: Path,
    listen: str,
    upstreams: list[str],
    user: str | None = None,
    max_conns: int | None = None,
) -> Path:
    """Write PREFIX/nginx.conf (and the temp dirs nginx needs); return its path."""
    prefix = prefix.resolve()
    for name in TEMP_DIRS:
        (prefix / name).mkdir(parents=True, exist_ok=True)
    if max_conns is None:
        max_conns = default_max_conns()
    if max_conns < 0:
        raise ValueError(f"max_conns must be >= 0 (0 = no limit), got {max_conns}")
    passive = "max_fails=1 fail_timeout=5s"
    servers = "\n        ".join(f"server {u} max_conns={max_conns} {passive};" for u in upstreams)
    # The probes' group: the same instances, never refused for being busy.
    probe_servers = "\n        ".join(f"server {u} {passive};" for u in upstreams)
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
        "@PROBE_UPSTREAMS@": probe_servers,
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
    parser.add_argument(
        "--max-conns",
        type=int,
        help="requests each instance takes at once, the rest answer 503 at once "
        "(default: NGINX_MAX_CONNS, else gunicorn workers x threads; 0 = no limit)",
    )
    args = parser.parse_args()
    print(render(args.prefix, args.listen, args.upstream, args.user, args.max_conns))


if __name__ == "__main__":
    main()
