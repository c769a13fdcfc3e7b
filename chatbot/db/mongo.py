"""One MongoClient per worker process, created lazily after the fork."""

from __future__ import annotations

import os
import threading

import pymongo
from pymongo import monitoring
from pymongo.database import Database

from chatbot.settings import Settings


class Mongo:
    """Hands out the process's MongoClient and database.

    PyMongo is not fork-safe, so the client is made on first use in each process
    (gunicorn workers fork from the master) and remade if the pid changes.
    """

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._client: pymongo.MongoClient | None = None
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
    def client(self) -> pymongo.MongoClient:
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._client = self._new_client()
                    self._pid = os.getpid()
        return self._client

    @property
    def db(self) -> Database:
        assert self._settings is not None, "Mongo.init_app was not called"
        return self.client[self._settings.mongo_db]

    def _new_client(self) -> pymongo.MongoClient:
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
        """Ping the server within `timeout_s`, server selection included; raise on failure."""
        with pymongo.timeout(timeout_s):
            self.db.command("ping")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
