"""The app's application services, built once per app and reached through it.

Flask extensions keep their state on `app.extensions`, and so do these (warehouse
registers its service factories once per app the same way): views, the CLI and the
request-side auth ask `services()` instead of building a service per request.

PyMongo's client is made per worker process after the fork (chatbot/db/mongo.py) and
made again after a close, so the services holding the database are built on first use
in a process and again when its client changes; the others once per app.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from functools import cached_property
from typing import Any

from flask import Flask, current_app

from chatbot.auth import CodeSender, Tokens, load_sender
from chatbot.cache import RedisCache
from chatbot.channels.graph import GraphClient
from chatbot.channels.templates import Templates
from chatbot.chat.banks import BankRegistry
from chatbot.chat.children import ChildDirectory
from chatbot.chat.reminders import ReminderService
from chatbot.chat.service import ChatService
from chatbot.chat.staff import StaffService
from chatbot.chat.users import UserDirectory
from chatbot.chat.whatsapp import WhatsAppChannel
from chatbot.clock import Clock
from chatbot.db import Database, Mongo
from chatbot.redis_store import RedisStore
from chatbot.settings import Settings
from chatbot.tasks import TaskQueue

KEY = "chatbot.services"

log = logging.getLogger(__name__)


class Services:
    """The application services of one app."""

    def __init__(
        self,
        settings: Settings,
        mongo: Mongo,
        redis_store: RedisStore,
        cache: RedisCache,
        clock: Clock,
        on_change: Callable[[str, bool], None],
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.tokens = Tokens(settings.secret_key, settings.token_max_age_s)
        # Parsed banks and the active version are remembered per process, for the app's life.
        self.banks = BankRegistry(lambda: mongo.db)
        self._mongo = mongo
        self._redis_store = redis_store
        self._cache = cache
        self._on_change = on_change
        self._lock = threading.Lock()
        self._chat: tuple[object, int, ChatService] | None = None
        self._whatsapp: tuple[ChatService, WhatsAppChannel] | None = None
        self._staff: tuple[ChatService, StaffService] | None = None
        # Built now: a WHATSAPP_TEMPLATE_* naming something unknown stops start-up.
        self.templates = Templates(
            settings.whatsapp_template_languages, settings.whatsapp_template_names
        )

    @cached_property
    def sender(self) -> CodeSender:
        """The one-time code sender (OTP_SENDER), imported on first use."""
        return load_sender(self.settings.otp_sender)

    @property
    def db(self) -> Database[Any]:
        """This process's database, for views that read a repository directly."""
        return self._mongo.db

    @property
    def chat(self) -> ChatService:
        """The chat service, built once per process and database client."""
        client, pid = self._mongo.client, os.getpid()
        built = self._chat
        if built is None or built[0] is not client or built[1] != pid:
            with self._lock:
                built = self._chat
                if built is None or built[0] is not client or built[1] != pid:
                    service = ChatService(
                        client[self.settings.mongo_db],
                        self._redis_store,
                        self.settings,
                        self.banks,
                        self.tokens,
                        self._cache,
                        self.clock,
                        self.sender,
                        on_change=self._on_change,
                    )
                    built = self._chat = (client, pid, service)
        return built[2]

    @property
    def staff(self) -> StaffService:
        """The health workers' and admins' reads and writes, on this process's database."""
        chat = self.chat
        built = self._staff
        if built is None or built[0] is not chat:
            with self._lock:
                built = self._staff
                if built is None or built[0] is not chat:
                    staff = StaffService(chat.db, self.clock, self.settings.timezone,
                                         self._on_change, self.users.set_role)  # fmt: skip
                    built = self._staff = (chat, staff)
        return built[1]

    @property
    def whatsapp(self) -> WhatsAppChannel:
        """The WhatsApp channel on this process's chat service (built with it)."""
        chat = self.chat
        built = self._whatsapp
        if built is None or built[0] is not chat:
            with self._lock:
                built = self._whatsapp
                if built is None or built[0] is not chat:
                    channel = WhatsAppChannel(
                        chat, chat.db, self.settings, self.clock, self.graph,
                        rate=lambda wa_id: self.tasks.wait_for_rate(wa_id),
                        observe=lambda *sent: self.tasks.record_send(*sent),
                        templates=self.templates,
                    )  # fmt: skip
                    built = self._whatsapp = (chat, channel)
        return built[1]

    @property
    def reminders(self) -> ReminderService:
        """The reminder scheduler on this process's chat service (the sweeper runs it)."""
        chat = self.chat
        notify = None
        if self.settings.whatsapp_enabled:

            def notify(wa_id: str, template: str, values: dict[str, str], ref: str) -> None:
                if self.whatsapp.notify(wa_id, template, values, ref) is not None:
                    self.tasks.enqueue_send(wa_id)

        return ReminderService(
            chat.db, self._redis_store, chat.users, self.settings, chat.schedule, notify
        )

    @cached_property
    def graph(self) -> GraphClient:
        """The Graph API client (WHATSAPP_API_BASE_URL: Meta's, or the emulator)."""
        s = self.settings
        return GraphClient(
            s.whatsapp_api_base_url,
            s.whatsapp_api_version,
            s.whatsapp_phone_number_id,
            s.whatsapp_access_token,
            s.whatsapp_send_timeout_s,
            pool_size=s.whatsapp_worker_threads,
        )

    @cached_property
    def tasks(self) -> TaskQueue:
        """The task queue on the stack's Redis; its actors use this process's channel."""
        return TaskQueue(self.settings, lambda: self.whatsapp)

    def queue_turns(self, senders: list[str]) -> None:
        """Queue the turns of these senders; if Redis refuses, the requeuer will (their
        messages are in MongoDB already)."""
        if senders and not self.tasks.enqueue_turns(senders):
            log.warning("whatsapp turns not queued now (Redis); the requeuer will queue them")

    @property
    def users(self) -> UserDirectory:
        """Users by id (Redis first): the directory behind every token."""
        return self.chat.users

    @property
    def children(self) -> ChildDirectory:
        """Children and their latest results (Redis first)."""
        return self.chat.children


def init_app(app: Flask, services: Services) -> None:
    app.extensions[KEY] = services


def services() -> Services:
    """The current app's services."""
    found: Services = current_app.extensions[KEY]
    return found
