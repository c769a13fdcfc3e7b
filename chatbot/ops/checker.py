"""Active health checks for nginx's upstream instances (open-source nginx has none).

    python -m chatbot.ops.checker run --prefix var/nginx     # the process, in the stack
    python -m chatbot.ops.checker status --prefix var/nginx  # its state as JSON

Every HEALTHCHECK_INTERVAL_S (30 s) it sends GET HEALTHCHECK_PATH (/health) to every
instance listed in PREFIX/upstreams.json, straight to the instance (not through nginx),
with a timeout of HEALTHCHECK_TIMEOUT_S (5 s). A 200 is a success (`ok` or `degraded`:
the instance serves, Redis or not); anything else (503, a refused connection, a
timeout) a failure. After HEALTHCHECK_UNHEALTHY_AFTER (3) failures in a row an instance
is marked unhealthy, rendered `down` in nginx's upstream and nginx is reloaded
gracefully; after HEALTHCHECK_HEALTHY_AFTER (2) successes in a row it is put back. Each
transition is logged (JSON, `event` upstream_down / upstream_up). When every instance
that is not drained is unhealthy they all stay in rotation (chatbot/ops/upstreams.py,
"fail open"). nginx's passive checks (max_fails=1 fail_timeout=5s) stay on, for the
requests between two probes.

After each round the checker writes PREFIX/checker.json (per instance: the verdict, the
counters, the last probe, the last transition), which `status` prints and nginx serves
on loopback at /_ops/checker.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from chatbot.errors import ConfigError, ReloadError
from chatbot.logs import make_formatter
from chatbot.ops import upstreams
from chatbot.settings import CheckerSettings

STATUS_FILE = "checker.json"
log = logging.getLogger("chatbot.checker")


# The design's health-check parameters (HEALTHCHECK_*), read and validated with the
# app's settings (chatbot/settings.py).
CheckerConfig = CheckerSettings


@dataclass
class Probe:
    ok: bool
    status: int | None
    latency_ms: float
    error: str | None
    at: str


class Transition(TypedDict):
    """An instance's last change of verdict, as shown in the status file."""

    to: str  # "healthy" or "unhealthy"
    at: str
    reason: str


@dataclass
class Track:
    """What the checker remembers of one instance between rounds."""

    failures: int = 0  # in a row
    successes: int = 0  # in a row
    last: Probe | None = None
    last_transition: Transition | None = None
    transitions: int = 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def probe(address: str, config: CheckerConfig) -> Probe:
    """One GET of the health path, straight to the instance."""
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    request = urllib.request.Request(
        f"http://{address}{config.path}", headers={"User-Agent": "chatbot-checker"}
    )
    try:
        with urllib.request.urlopen(request, timeout=config.timeout_s) as response:  # noqa: S310
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.read()
        exc.close()
    except (OSError, ValueError) as exc:  # refused, reset, timeout, bad address
        error = type(exc).__name__
        reason = getattr(exc, "reason", None)  # URLError wraps the socket's error
        if isinstance(reason, BaseException):
            error = type(reason).__name__
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    return Probe(status == 200, status, latency_ms, error, _now())


def _describe(result: Probe) -> str:
    return f"HTTP {result.status}" if result.status is not None else (result.error or "error")


@dataclass
class Checker:
    prefix: Path
    config: CheckerConfig
    tracks: dict[str, Track] = field(default_factory=dict)
    reload_pending: bool = False
    rounds: int = 0
    last_round_at: str | None = None

    def check_once(self) -> None:
        """Probe every instance once, apply the transitions, write the status file."""
        state = upstreams.load(self.prefix)
        addresses = [s.address for s in state.servers]
        with ThreadPoolExecutor(max_workers=max(1, len(addresses))) as pool:
            results = dict(
                zip(addresses, pool.map(lambda a: probe(a, self.config), addresses), strict=True)
            )
        for address, result in results.items():
            track = self.tracks.setdefault(address, Track())
            track.last = result
            if result.ok:
                track.successes, track.failures = track.successes + 1, 0
            else:
                track.failures, track.successes = track.failures + 1, 0
                log.info(
                    "%s: probe failed (%s), %s in a row",
                    address,
                    _describe(result),
                    track.failures,
                    extra={"event": "probe_failed", "address": address},
                )
        self._apply()
        self.rounds += 1
        self.last_round_at = _now()
        self.write_status()

    def _apply(self) -> None:
        changed: list[tuple[upstreams.Server, str]] = []

        def mutate(state: upstreams.Upstreams) -> None:
            for server in state.servers:
                track = self.tracks.get(server.address)
                if track is None or track.last is None:
                    continue
                if server.healthy and track.failures >= self.config.unhealthy_after:
                    server.healthy = False
                    changed.append((server, "unhealthy"))
                elif not server.healthy and track.successes >= self.config.healthy_after:
                    server.healthy = True
                    changed.append((server, "healthy"))

        after: upstreams.Upstreams | None
        try:
            _, after = upstreams.change(self.prefix, mutate)
            if self.reload_pending and not changed:
                upstreams.reload(self.prefix)
            self.reload_pending = False
        except ReloadError as exc:
            # The state and configuration are written; nginx takes them on its next
            # (re)start, and the checker retries the reload next round.
            self.reload_pending = True
            log.warning("nginx not reloaded: %s", exc, extra={"event": "reload_failed"})
            after = None
        for server, verdict in changed:
            track = self.tracks[server.address]
            track.transitions += 1
            last = track.last
            assert last is not None
            if verdict == "unhealthy":
                reason = f"{track.failures} failures in a row (last: {_describe(last)})"
            else:
                reason = f"{track.successes} successes in a row"
            in_rotation = after.in_rotation(after.server(server.address)) if after else None
            track.last_transition = {"to": verdict, "at": last.at, "reason": reason}
            log.log(
                logging.WARNING if verdict == "unhealthy" else logging.INFO,
                "%s (%s) is %s: %s; in nginx's rotation: %s%s",
                server.name,
                server.address,
                verdict,
                reason,
                in_rotation,
                " (every instance fails: all kept in rotation)"
                if after is not None and after.fail_open()
                else "",
                extra={
                    "event": "upstream_down" if verdict == "unhealthy" else "upstream_up",
                    "server": server.name,
                    "address": server.address,
                    "in_rotation": in_rotation,
                    "fail_open": after.fail_open() if after else None,
                },
            )

    def status(self) -> dict[str, Any]:
        state = upstreams.load(self.prefix)
        servers = []
        for server in state.servers:
            track = self.tracks.get(server.address, Track())
            servers.append(
                {
                    "name": server.name,
                    "address": server.address,
                    "healthy": server.healthy,
                    "drained": server.drained,
                    "in_rotation": state.in_rotation(server),
                    "consecutive_failures": track.failures,
                    "consecutive_successes": track.successes,
                    "last_probe": asdict(track.last) if track.last else None,
                    "last_transition": track.last_transition,
                    "transitions": track.transitions,
                }
            )
        return {
            "checker": {
                "pid": os.getpid(),
                "rounds": self.rounds,
                "last_round_at": self.last_round_at,
                "reload_pending": self.reload_pending,
                **asdict(self.config),
            },
            "fail_open": state.fail_open(),
            "servers": servers,
        }

    def write_status(self) -> None:
        upstreams._write_atomically(
            self.prefix / STATUS_FILE, json.dumps(self.status(), indent=2) + "\n"
        )

    def run(self, stop: threading.Event) -> None:
        log.info(
            "checking %s every %ss (timeout %ss, unhealthy after %s, healthy after %s)",
            self.config.path,
            self.config.interval_s,
            self.config.timeout_s,
            self.config.unhealthy_after,
            self.config.healthy_after,
            extra={"event": "checker_started"},
        )
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.check_once()
            except (OSError, ValueError, KeyError) as exc:  # e.g. the state file not there yet
                log.warning("check round failed: %r", exc, extra={"event": "round_failed"})
            stop.wait(max(0.0, self.config.interval_s - (time.monotonic() - started)))


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(make_formatter())
    handler.addFilter(_StampFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())


class _StampFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = "-"
        record.instance_id = os.environ.get("INSTANCE_ID", "checker")
        return True


def read_status(prefix: Path) -> dict[str, Any]:
    """The checker's last status with the current rotation (for `status` and tests)."""
    status: dict[str, Any] = json.loads((prefix / STATUS_FILE).read_text())
    state = upstreams.load(prefix)
    rotation = {s.address: state.in_rotation(s) for s in state.servers}
    for server in status["servers"]:
        server["in_rotation"] = rotation.get(server["address"], server["in_rotation"])
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "once", "status"))
    parser.add_argument(
        "--prefix",
        type=Path,
        default=Path(os.environ.get("NGINX_PREFIX", "var/nginx")),
        help="nginx's prefix, where upstreams.json is (default: NGINX_PREFIX or var/nginx)",
    )
    args = parser.parse_args(argv)
    prefix = args.prefix.resolve()
    if args.command == "status":
        try:
            print(json.dumps(read_status(prefix), indent=2))
        except FileNotFoundError as exc:
            print(f"no checker status in {prefix}: {exc.strerror}", file=sys.stderr)
            return 1
        return 0
    _configure_logging()
    try:
        checker = Checker(prefix, CheckerConfig.from_env())
    except ConfigError as exc:
        print(f"checker: {exc}", file=sys.stderr)
        return 2
    if args.command == "once":
        checker.check_once()
        print(json.dumps(checker.status(), indent=2))
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    checker.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
