"""Side-by-side benchmark of the choices the service makes, printed as ratios from one run.

    make bench            # or: .venv/bin/python devtools/bench.py [--seconds 4] [--connections 32]

It starts its own FerretDB, Redis, gunicorn instances and nginx on free loopback
ports (the test harness), seeds a little data, and drives each pair of
configurations with wrk for a fixed, bounded time. Absolute numbers move ±20%
between runs on a 2-core machine; compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import FerretDB, Gunicorn, Nginx, Redis, Service, http  # noqa: E402 -- after sys.path

SECONDS = 3
DB_DELAY_MS = 20.0
ROUNDS = 3
CONNECTIONS = 32


def wrk(url: str, headers: dict[str, str], seconds: int, connections: int) -> dict[str, float]:
    """Run wrk once; return requests/s, mean and p99 latency (ms), and non-2xx count."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1 / 1024, "KB": 1, "MB": 1024, "GB": 1024 * 1024}[transfer.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "mean_ms": _ms(re.search(r"Latency\s+([\d.]+)(\w+)", out)),
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+)(\w+)", out)),
        "kb_per_req": float(transfer.group(1)) * scale / rps if rps else 0.0,
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def _ms(match: re.Match) -> float:
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1, "s": 1000}[unit]


class Bench:
    def __init__(self, root: Path, seconds: int, connections: int, rounds: int) -> None:
        self.root = root
        self.rounds = rounds
        self.seconds = seconds
        self.connections = connections
        self.mongo = FerretDB(root / "ferretdb")
        self.redis = Redis(root / "redis")
        self.rows: list[tuple[str, str, dict[str, float]]] = []

    def app_env(self, **extra: str) -> dict[str, str]:
        return {
            "CHATBOT_ENV": "production",
            "SECRET_KEY": "bench-secret-key-not-for-real-use",
            "MONGO_URI": self.mongo.uri,
            "MONGO_DB": "bench",
            "REDIS_URL": self.redis.url,
            "LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": "2",
            # The benchmark measures the service, not the rate limiter's 429s.
            "RATE_LIMIT_DEFAULT": "10000000 per minute",
            "CHAT_RATE_LIMIT": "10000000 per minute",
            **extra,
        }

    def instance(self, name: str, **extra: str) -> Gunicorn:
        app = Gunicorn(self.root / name, name, self.app_env(**extra))
        app.start()
        return app

    def compare(self, group: str, cases: list[tuple[str, str, dict[str, str]]]) -> None:
        """Measure each case `rounds` times, interleaved, and keep each one's median run.

        Interleaving spreads the machine's drift (FerretDB and wrk share the 2 cores)
        over every case instead of penalising whichever ran at a bad moment.
        """
        runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in cases}
        for _, url, headers in cases:  # warm-up: workers open connections on first use
            wrk(url, headers, 1, self.connections)
        for _ in range(self.rounds):
            for label, url, headers in cases:
                runs[label].append(wrk(url, headers, self.seconds, self.connections))
        for label, _, _ in cases:
            result = sorted(runs[label], key=lambda r: r["rps"])[len(runs[label]) // 2]
            spread = [round(r["rps"]) for r in runs[label]]
            self.rows.append((group, label, {**result, "runs_rps": spread}))
            print(
                f"  {group:<34} {label:<32} {result['rps']:>7.0f} req/s (runs {spread})"
                f"  p99 {result['p99_ms']:6.1f} ms  {result['kb_per_req']:5.2f} KB/req"
                + (f"  NON-2XX {result['errors']}" if result["errors"] else ""),
                flush=True,
            )


class DelayProxy(Service):
    """devtools/delay_proxy.py in front of the database."""

    name = "delay-proxy"

    def __init__(self, workdir: Path, target_port: int, delay_ms: float) -> None:
        super().__init__(workdir)
        self.target_port = target_port
        self.delay_ms = delay_ms

    def command(self) -> list[str]:
        return [
            sys.executable,
            str(ROOT / "devtools" / "delay_proxy.py"),
            f"--listen=127.0.0.1:{self.port}",
            f"--target=127.0.0.1:{self.target_port}",
            f"--delay-ms={self.delay_ms}",
        ]


def seed(base: str) -> dict[str, str]:
    """A parent with one screened child and a health worker; return their auth headers."""
    parent = http("POST", base + "/api/v1/chat/start", {"phoneNumber": "081900000001"}).json()[
        "token"
    ]
    auth = {"Authorization": f"Bearer {parent}"}
    for n, text in enumerate(
        ["halo", "ya", "1", "Budi", "01-01-2025", "1", "38", "ya"] + ["ya"] * 10
    ):
        reply = http(
            "POST", base + "/api/v1/chat/messages", {"text": text, "clientMessageId": f"b{n}"}, auth
        )
        assert reply.status == 201, reply.body
    return auth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=SECONDS)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    # TERM (e.g. a timeout) must still run the clean-up below, or servers outlive the run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    with tempfile.TemporaryDirectory(prefix="chatbot-bench-") as tmp:
        bench = Bench(Path(tmp), args.seconds, args.connections, args.rounds)
        started = []
        try:
            bench.mongo.start()
            bench.redis.start()
            print(
                f"wrk -t2 -c{args.connections} -d{args.seconds}s, {args.rounds} interleaved rounds,"
                " median shown; 2 workers per instance\n"
            )

            # 1. Worker type: the same I/O-bound route (token check + 2 MongoDB reads).
            workers = {
                "sync, 2 workers": {"GUNICORN_WORKER_CLASS": "sync"},
                "gthread, 2 workers x 4 threads": {"GUNICORN_THREADS": "4"},
                "gthread, 2 workers x 8 threads": {"GUNICORN_THREADS": "8"},
                "gthread, 2 workers x 16 threads": {"GUNICORN_THREADS": "16"},
            }
            path = "/api/v1/children"
            auth = None

            def worker_group(title: str, **extra: str) -> None:
                """Start one instance per worker type, compare them on `path`, stop them."""
                nonlocal auth
                apps = {
                    label: bench.instance(f"{title[:3]}{n}", **env, **extra)
                    for n, (label, env) in enumerate(workers.items())
                }
                started.extend(apps.values())
                auth = auth or seed(f"http://127.0.0.1:{next(iter(apps.values())).port}")
                urls = [
                    (label, f"http://127.0.0.1:{app.port}{path}", auth)
                    for label, app in apps.items()
                ]
                bench.compare(f"{title}: GET {path}", urls)
                for app in apps.values():
                    app.stop()

            worker_group("worker type")

            # 1b. The same with every database reply delayed (as from a far or busy host):
            # the case threads exist for. The delay is exaggerated on purpose, so that
            # waiting, not this machine's 2 shared cores, bounds the sync workers.
            proxy = DelayProxy(bench.root / "proxy", bench.mongo.port, DB_DELAY_MS)
            proxy.start()
            started.append(proxy)
            worker_group(
                f"worker type, DB {DB_DELAY_MS:g} ms away",
                MONGO_URI=f"mongodb://127.0.0.1:{proxy.port}/",
            )

            # 2. nginx in front of two instances vs one instance direct (defaults: gthread x 16).
            app1, app2 = bench.instance("app1"), bench.instance("app2")
            started += [app1, app2]
            nginx = Nginx(bench.root / "nginx", [app1.port, app2.port])
            nginx.start()
            started.append(nginx)
            direct = f"http://127.0.0.1:{app1.port}"
            for path, headers in [("/livez", {}), ("/api/v1/children", auth), ("/health", {})]:
                bench.compare(
                    f"topology: GET {path}",
                    [
                        ("one instance, direct", direct + path, headers),
                        ("nginx -> 2 instances", nginx.url + path, headers),
                    ],
                )

            # 3. Compression by Flask-Compress on a large JSON (the OpenAPI document),
            # asked of an instance directly (through nginx it is a cache hit, see 4).
            doc = direct + "/api/v1/openapi.json"
            bench.compare(
                "compression: GET openapi.json",
                [
                    ("identity", doc, {"Accept-Encoding": "identity"}),
                    ("gzip, level 4", doc, {"Accept-Encoding": "gzip"}),
                    ("br, level 4", doc, {"Accept-Encoding": "br"}),
                ],
            )

            # 4. nginx's response cache for what every user shares.
            path = "/api/v1/openapi.json"
            gzip = {"Accept-Encoding": "gzip"}
            bench.compare(
                f"nginx cache: GET {path} (gzip)",
                [
                    ("one instance, direct", direct + path, gzip),
                    ("nginx cache hit", nginx.url + path, gzip),
                ],
            )

            # 5. Response caching in Redis (flask-caching) for the staff counts.
            staff = seed_staff(nginx.url, bench.mongo.uri)
            uncached = bench.instance("stats-uncached", STATS_CACHE_S="0")
            cached = bench.instance("stats-cached", STATS_CACHE_S="30")
            started += [uncached, cached]
            path = "/api/v1/worker/stats"
            bench.compare(
                f"cache: GET {path}",
                [
                    ("computed every time", f"http://127.0.0.1:{uncached.port}{path}", staff),
                    (
                        "flask-caching on Redis, 30 s",
                        f"http://127.0.0.1:{cached.port}{path}",
                        staff,
                    ),
                ],
            )
        finally:
            for service in reversed(started):
                service.stop()
            bench.redis.stop()
            bench.mongo.stop()
        report(bench.rows)


def seed_staff(base: str, mongo_uri: str) -> dict[str, str]:
    """A health worker's headers: register, then grant the role as `grant-role` does."""
    import pymongo

    token = http("POST", base + "/api/v1/chat/start", {"phoneNumber": "081900000002"}).json()[
        "token"
    ]
    with pymongo.MongoClient(mongo_uri) as client:
        client["bench"]["users"].update_one(
            {"phoneNumber": "+6281900000002"}, {"$set": {"role": "health_worker"}}
        )
    return {"Authorization": f"Bearer {token}"}


def report(rows: list[tuple[str, str, dict[str, float]]]) -> None:
    print("\nRatios within each group (req/s relative to its first line):")
    groups: dict[str, list[tuple[str, dict[str, float]]]] = {}
    for group, label, result in rows:
        groups.setdefault(group, []).append((label, result))
    for group, entries in groups.items():
        base = entries[0][1]["rps"] or 1
        print(f"  {group}")
        for label, result in entries:
            print(f"    {label:<40} {result['rps'] / base:5.2f}x")
    out = ROOT / "var" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps([{"group": g, "label": lab, **r} for g, lab, r in rows], indent=1))
    print(f"\nraw figures: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
