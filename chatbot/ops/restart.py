"""Rolling restart: each instance in turn, drained from nginx first, so no request fails.

    python -m chatbot.ops.restart --prefix var/nginx \
        --stop  'devtools/stackctl stop {name}' --start 'devtools/stackctl start {name}'
    python -m chatbot.ops.restart drain app1 | undrain app1     # by hand

For each instance listed in PREFIX/upstreams.json (or only those named):

1. refuse to go on unless another instance is in rotation (healthy, not drained);
2. mark it drained: nginx is rendered with it `down` and reloaded gracefully, so new
   requests go to the others while nginx's old worker processes finish theirs;
3. wait until nothing is in flight to it: nginx's old workers have exited and no
   connection from this host to the instance is open (at most --drain-timeout);
4. run the stop command, then the start command ({name}, {address}, {host}, {port}
   are filled in: `systemctl restart chatbot@{name}`, `ssh {host} ...`);
5. wait for --healthy-after (2) successful health checks in a row, straight to the
   instance, one every --probe-interval (1 s), at most --start-timeout (60 s);
6. put it back in rotation (and healthy, for the active checker) and reload nginx.

An instance that does not come back healthy is left drained and the restart stops
with a non-zero exit: the others keep serving; `undrain NAME` puts it back by hand.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from chatbot.errors import ReloadError, RestartError
from chatbot.ops import upstreams
from chatbot.ops.checker import CheckerConfig, probe


def say(message: str) -> None:
    print(f"restart: {message}", flush=True)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def open_connections(address: str) -> int:
    """Established TCP connections from this host to `address` (nginx's, the probes')."""
    host, port = split_address(address)
    wanted = {"127.0.0.1", "::1"} if host in ("localhost", "") else {host}
    return sum(
        1
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_ESTABLISHED
        and conn.raddr
        and conn.raddr.port == port
        and conn.raddr.ip in wanted
    )


def old_nginx_workers(prefix: Path) -> int:
    """nginx worker processes still finishing requests after a reload."""
    return sum(upstreams.nginx_workers(prefix).values())


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def set_drained(
    prefix: Path, name: str, drained: bool, *, healthy: bool | None = None
) -> upstreams.Upstreams:
    def mutate(state: upstreams.Upstreams) -> None:
        server = state.server(name)
        server.drained = drained
        if healthy is not None:
            server.healthy = healthy

    _, after = upstreams.change(prefix, mutate)
    return after


def drain(prefix: Path, name: str, timeout: float, force: bool = False) -> None:
    state = upstreams.load(prefix)
    server = state.server(name)
    others = [s for s in state.servers if s is not server and s.healthy and not s.drained]
    if not others and not force:
        raise RestartError(
            f"{server.name}: no other healthy instance in rotation; not draining it "
            "(--force to do it anyway)"
        )
    started = time.monotonic()
    set_drained(prefix, server.name, True)
    say(f"{server.name}: out of nginx's rotation (reloaded), waiting for its requests")

    def idle() -> bool:
        return old_nginx_workers(prefix) == 0 and open_connections(server.address) == 0

    if wait_until(idle, timeout):
        say(f"{server.name}: drained in {time.monotonic() - started:.1f} s")
    else:
        say(
            f"{server.name}: still {open_connections(server.address)} connection(s) after "
            f"{timeout:.0f} s; going on (the instance's graceful stop lets them finish)"
        )


def run_command(template: str, server: upstreams.Server) -> None:
    host, port = split_address(server.address)
    command = template.format(name=server.name, address=server.address, host=host, port=port)
    say(f"{server.name}: $ {command}")
    done = subprocess.run(shlex.split(command), check=False, timeout=300)
    if done.returncode != 0:
        raise RestartError(f"{server.name}: `{command}` exited with {done.returncode}")


def wait_healthy(
    server: upstreams.Server, config: CheckerConfig, needed: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    in_a_row = 0
    while time.monotonic() < deadline:
        result = probe(server.address, config)
        in_a_row = in_a_row + 1 if result.ok else 0
        if in_a_row >= needed:
            return
        time.sleep(config.interval_s)
    raise RestartError(
        f"{server.name}: not healthy {needed} times in a row within {timeout:.0f} s; "
        f"left out of rotation (`python -m chatbot.ops.restart undrain {server.name}`)"
    )


def restart_one(prefix: Path, name: str, args: argparse.Namespace) -> None:
    server = upstreams.load(prefix).server(name)
    started = time.monotonic()
    drain(prefix, server.name, args.drain_timeout, args.force)
    run_command(args.stop, server)
    if args.start:
        run_command(args.start, server)
    config = CheckerConfig(
        path=os.environ.get("HEALTHCHECK_PATH", "/health"),
        interval_s=args.probe_interval,
        timeout_s=args.probe_timeout,
    )
    wait_healthy(server, config, args.healthy_after, args.start_timeout)
    # It passed the checks the active checker asks for: the checker's verdict too.
    set_drained(prefix, server.name, False, healthy=True)
    say(
        f"{server.name}: healthy {args.healthy_after} times in a row, back in rotation "
        f"({time.monotonic() - started:.1f} s in all)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "action", nargs="?", default="rolling", choices=("rolling", "drain", "undrain")
    )
    parser.add_argument("names", nargs="*", help="instances (name or address); default: all")
    parser.add_argument(
        "--prefix", type=Path, default=Path(os.environ.get("NGINX_PREFIX", "var/nginx"))
    )
    parser.add_argument(
        "--stop", help="command stopping one instance ({name} {address} {host} {port})"
    )
    parser.add_argument("--start", help="command starting it again (omit when --stop restarts it)")
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument("--probe-interval", type=float, default=1.0)
    parser.add_argument("--probe-timeout", type=float, default=5.0)
    parser.add_argument("--healthy-after", type=int, default=2)
    parser.add_argument("--force", action="store_true", help="drain even the last instance")
    args = parser.parse_args(argv)
    prefix = args.prefix.resolve()
    try:
        state = upstreams.load(prefix)
        names = args.names or [s.name for s in state.servers]
        for name in names:
            state.server(name)  # unknown names fail before anything changes
        if args.action == "drain":
            for name in names:
                drain(prefix, name, args.drain_timeout, args.force)
            return 0
        if args.action == "undrain":
            for name in names:
                set_drained(prefix, name, False)
                say(f"{name}: back in rotation")
            return 0
        if not args.stop:
            parser.error("a rolling restart needs --stop (and --start unless --stop restarts)")
        for name in names:
            restart_one(prefix, name, args)
    except (RestartError, KeyError, ReloadError, FileNotFoundError) as exc:
        say(f"failed: {exc}")
        return 1
    say(f"done: {', '.join(names)} restarted one at a time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
