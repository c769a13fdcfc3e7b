"""Redis through Sentinel (REDIS_SENTINELS): the pool follows a failover, the breaker stays.

A real master, a replica and one sentinel on loopback; `SENTINEL FAILOVER` promotes the
replica, and the store's next connection after the breaker's pause goes to it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from chatbot.errors import ConfigError
from chatbot.redis_store import RedisStore
from chatbot.settings import Settings
from tests.harness import Redis, free_port, wait_for_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
]
SERVICE = "chatbot"


def until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except redis.RedisError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture
def sentinel_set(tmp_path) -> Iterator[dict]:
    master = Redis(tmp_path / "master")
    master.start()
    procs: list[subprocess.Popen] = []
    clients: list[redis.Redis] = []  # closed at the end: an open socket fails the run
    pools: list[redis.ConnectionPool] = []
    try:
        replica_port, sentinel_port = free_port(), free_port()
        (tmp_path / "replica").mkdir()
        procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(replica_port),
                    "--dir",
                    str(tmp_path / "replica"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--replicaof",
                    "127.0.0.1",
                    str(master.port),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
        )
        wait_for_port(replica_port, proc=procs[-1])
        conf = tmp_path / "sentinel.conf"  # sentinel rewrites its file: a writable copy
        conf.write_text(
            f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        procs.append(
            subprocess.Popen(
                ["redis-server", str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
        )
        wait_for_port(sentinel_port, proc=procs[-1])
        replica = redis.Redis(port=replica_port)
        sentinel = redis.Redis(port=sentinel_port)
        clients += [replica, sentinel, redis.Redis(port=master.port)]
        until(
            lambda: replica.info("replication")["master_link_status"] == "up", 10, "replica in sync"
        )
        until(lambda: sentinel.sentinel_slaves(SERVICE), 15, "the sentinel knows the replica")
        yield {
            "master": clients[2],
            "replica": replica,
            "replica_port": replica_port,
            "sentinel": sentinel,
            "sentinel_port": sentinel_port,
            "clients": clients,
            "pools": pools,
        }
    finally:
        for client in clients:
            client.close()
        for pool in pools:
            pool.disconnect()
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        master.stop()


def test_redis_sentinels_are_read_from_the_environment():
    settings = Settings.from_env(
        {"REDIS_SENTINELS": "10.0.0.21:26379, [::1]:26380", "REDIS_SENTINEL_SERVICE": "chat"}
    )
    assert settings.redis_sentinels == (("10.0.0.21", 26379), ("::1", 26380))
    assert settings.redis_sentinel_service == "chat"
    assert Settings.from_env({}).redis_sentinels == ()
    with pytest.raises(ConfigError, match="REDIS_SENTINELS"):
        Settings.from_env({"REDIS_SENTINELS": "10.0.0.21"})


def test_the_pool_follows_a_sentinel_failover(sentinel_set):
    settings = replace(
        Settings(),
        redis_url="redis://sentinel-managed/2",  # the database number; the host is not used
        redis_sentinels=(("127.0.0.1", sentinel_set["sentinel_port"]),),
        redis_sentinel_service=SERVICE,
        redis_breaker_reset_s=0.2,
    )
    store = RedisStore()
    store.init_app(settings)
    assert store.client is not None
    # Closed by the fixture: the pool's connections and its sentinel clients.
    sentinel_set["clients"] += [store.client, *store.pool.sentinel_manager.sentinels]
    sentinel_set["pools"].append(store.pool)
    store.client.set("before", "1")
    assert sentinel_set["master"].execute_command("SELECT", 2)  # the URL's database
    old_master = redis.Redis(
        port=sentinel_set["master"].connection_pool.connection_kwargs["port"], db=2
    )
    sentinel_set["clients"].append(old_master)
    assert old_master.get("before") == b"1"

    sentinel_set["sentinel"].execute_command("SENTINEL", "FAILOVER", SERVICE)
    until(
        lambda: sentinel_set["sentinel"].sentinel_get_master_addr_by_name(SERVICE)[1]
        == sentinel_set["replica_port"],
        15, "the sentinel promotes the replica",
    )  # fmt: skip
    # Until the sentinel turns the old master into a replica, a connection still open to
    # it can write there, and that write is lost when it resyncs: Redis replicates
    # asynchronously (docs/deployment.md). Writes resume once it refuses them.
    until(
        lambda: sentinel_set["master"].info("replication")["role"] == "slave",
        15, "the old master demoted",
    )  # fmt: skip
    failures = []
    deadline = time.monotonic() + 20
    while True:
        try:
            store.client.set("after", "1")
            break
        except redis.RedisError as exc:  # the demoted master, then the open breaker
            failures.append(type(exc).__name__)
            assert time.monotonic() < deadline, failures
            time.sleep(0.1)
    promoted = redis.Redis(port=sentinel_set["replica_port"], db=2)
    sentinel_set["clients"].append(promoted)
    assert promoted.info("replication")["role"] == "master"
    assert promoted.get("after") == b"1" and promoted.get("before") == b"1"
    assert all(name == "ConnectionError" for name in failures), failures
