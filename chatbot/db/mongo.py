"""One MongoClient per worker process, created lazily after the fork."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pymongo
from pymongo import monitoring
from pymongo.database import Database
from pymongo.errors import PyMongoError

from chatbot.settings import Settings

# How long a ping waits for a server whose last heartbeat failed: one turn of PyMongo's
# server-selection loop, which wakes every 0.5 s (its minimum heartbeat interval).
KNOWN_DOWN_WAIT_S = 0.5


class Mongo:
    """Hands out the process's MongoClient and database.

    PyMongo is not fork-safe, so the client is made on first use in each process
    (gunicorn workers fork from the master) and remade if the pid changes.
    """

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._client: pymongo.MongoClient[dict[str, Any]] | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._listeners: list[monitoring._EventListener] = []

    def init_app(self, settings: Settings) -> None:
        self.close()  # a new app (tests make many) must not reuse another app's client
        self._settings = settings

    def add_listener(self, listener: monitoring._EventListener) -> None:
        """Watch this process's database commands (PyMongo command monitoring).

        Takes effect for the next client: an open one is closed and remade on next use.
        """
        self._listeners.append(listener)
        self.close()

    @property
    def client(self) -> pymongo.MongoClient[dict[str, Any]]:
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._client = self._new_client()
                    self._pid = os.getpid()
        return self._client

    @property
    def db(self) -> Database[dict[str, Any]]:
        assert self._settings is not None, "Mongo.init_app was not called"
        return self.client[self._settings.mongo_db]

    def _new_client(self) -> pymongo.MongoClient[dict[str, Any]]:
        s = self._settings
        assert s is not None, "Mongo.init_app was not called"
        # Short timeouts: the default 30 s server selection equals gunicorn's worker
        # timeout, so an outage would kill workers instead of answering 503.
        return pymongo.MongoClient(
            s.mongo_uri,
            serverSelectionTimeoutMS=s.mongo_server_selection_timeout_ms,
            connectTimeoutMS=s.mongo_connect_timeout_ms,
            socketTimeoutMS=s.mongo_socket_timeout_ms,
            maxPoolSize=s.mongo_max_pool_size,
            tz_aware=True,
            appname=f"chatbot/{s.instance_id}",
            event_listeners=list(self._listeners),
        )

    def ping(self, timeout_s: float) -> None:
        """Ping the server within `timeout_s`, server selection included; raise on failure.

        A server PyMongo knows to be up gets the whole budget: a busy database's reply
        waits behind the load but comes. Otherwise server selection would wait out the
        whole budget on every probe of a stopped database, so the first KNOWN_DOWN_WAIT_S
        is a look: the selection asks the monitor for an immediate check, and a server
        that refused or timed out in it is reported down there; one that is merely slow
        to answer its first handshake gets the rest of the budget.
        """
        if self.client.topology_description.has_readable_server():
            with pymongo.timeout(timeout_s):
                self.db.command("ping")
            return
        started = time.monotonic()
        try:
            with pymongo.timeout(min(timeout_s, KNOWN_DOWN_WAIT_S)):
                self.db.command("ping")
            return
        except PyMongoError:
            if self._last_check_failed():
                raise
        with pymongo.timeout(max(timeout_s - (time.monotonic() - started), 0.001)):
            self.db.command("ping")

    def _last_check_failed(self) -> bool:
        servers = self.client.topology_description.server_descriptions().values()
        return bool(servers) and all(server.error is not None for server in servers)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
