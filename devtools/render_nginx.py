"""Render nginx/nginx.conf.template for the local stack, the tests or a server.

    python devtools/render_nginx.py --prefix var/nginx --listen 127.0.0.1:8080 \
        --upstream app1=127.0.0.1:8001 --upstream app2=127.0.0.1:8002 [--max-conns 32]

Each --upstream is an address (host:port) or NAME=ADDRESS; one per app instance, on this
host or others. Writes PREFIX/nginx.conf and PREFIX/upstreams.json, the state the health
checker and rolling restarts change afterwards (chatbot/ops/upstreams.py): rendering again
puts every instance back in rotation.

Each instance admits at most `max_conns` requests at once (nginx's `max_conns`); the
default is its capacity, gunicorn workers x threads, read from the same environment
variables and defaults as gunicorn.conf.py (NGINX_MAX_CONNS overrides; 0 = no limit).

PROXY_SECRET (the instances' own) is written to PREFIX/proxy_secret.conf (0600), which
nginx sends as X-Proxy-Secret: only then do the instances trust its X-Forwarded-For.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from chatbot.ops.upstreams import (
    TEMP_DIRS,
    TEMPLATE,
    default_max_conns,
    instance_capacity,
    render,
)

__all__ = ["TEMPLATE", "TEMP_DIRS", "default_max_conns", "instance_capacity", "render"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument(
        "--upstream", action="append", required=True, help="ADDRESS or NAME=ADDRESS (repeat)"
    )
    parser.add_argument("--user", help="worker user when started as root (e.g. www-data)")
    parser.add_argument(
        "--max-conns",
        type=int,
        help="requests each instance takes at once, the rest answer 503 at once "
        "(default: NGINX_MAX_CONNS, else gunicorn workers x threads; 0 = no limit)",
    )
    args = parser.parse_args()
    if not os.environ.get("PROXY_SECRET", "").strip():
        print(
            "render_nginx: PROXY_SECRET is not set: the instances will not trust nginx's "
            "X-Forwarded-For, and count every client as nginx's address (docs/deployment.md)",
            file=sys.stderr,
        )
    print(render(args.prefix, args.listen, args.upstream, args.user, args.max_conns))


if __name__ == "__main__":
    main()
