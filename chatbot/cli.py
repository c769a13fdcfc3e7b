"""Operator commands: `flask --app wsgi chatbot <command>`."""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import click
import redis
from flask import current_app
from flask.cli import AppGroup

from chatbot.db import DatabaseError
from chatbot.db.archive import MessageArchive
from chatbot.db.banks import BankRepository
from chatbot.db.indexes import ensure_indexes_with, server_has_ttl
from chatbot.db.leases import LeaseRepository
from chatbot.db.questionnaires import QuestionnaireRepository
from chatbot.db.receipts import ReceiptLog
from chatbot.db.sessions import SessionRepository
from chatbot.db.settle import MessageSettler
from chatbot.db.verifications import VerificationRepository
from chatbot.db.whatsapp import WhatsAppEvents
from chatbot.errors import (
    BankError,
    ConflictError,
    InvalidInputError,
    InvalidPhoneError,
    NotFoundError,
)
from chatbot.extensions import mongo
from chatbot.phone import normalise_phone
from chatbot.screening.bank import load_bank_file
from chatbot.services import services

cli = AppGroup("chatbot", help="Operate the chatbot service.")

# Statuses of a sent WhatsApp message come within days (read receipts the latest).
WHATSAPP_SENT_IDS_DAYS = 30


@cli.command("init-db")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for the database to answer (asked again every second).",
)
def init_db(wait_s: float) -> None:
    """Create every index (idempotent) and say whether sessions have a TTL index.

    Run once per start, before any instance serves, by one process: nothing else creates
    indexes (chatbot/db/indexes.py says why). With the MONGO_* settings and timeouts, on
    a client of its own. Exits 1, saying so, when the database did not answer within
    --wait seconds; the caller decides whether to try again (`make run` does, the systemd
    unit too).
    """
    settings = current_app.config["SETTINGS"]

    def waiting(exc: DatabaseError, left: float) -> None:
        click.echo(
            f"init-db: the database does not answer yet ({type(exc).__name__}); "
            f"trying again for {left:.0f} s more",
            err=True,
        )

    try:
        report = ensure_indexes_with(settings, wait_s, waiting)
    except DatabaseError as exc:
        raise click.ClickException(
            f"the database did not answer within {wait_s:g} s ({type(exc).__name__}); "
            "no index was created"
        ) from None
    for collection, names in report.items():
        click.echo(f"{collection}: {', '.join(names)}")
    ttl = server_has_ttl(mongo.db)
    click.echo(
        "sessions.expiresAt: TTL index"
        if ttl
        else "sessions.expiresAt: no TTL (query-time expiry + sweep)"
    )


@cli.command("import-bank")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--activate/--no-activate", default=True, help="Use it for new screenings.")
def import_bank(path: Path, activate: bool) -> None:
    """Validate a question bank file and store it (e.g. the official edition)."""
    try:
        bank = load_bank_file(path)
    except BankError as exc:
        raise click.ClickException(str(exc)) from None
    data = json.loads(path.read_text(encoding="utf-8"))
    BankRepository(mongo.db).save(bank.version, data, services().clock.now(), activate)
    items = sum(len(b.items) for b in bank.brackets)
    state = "active" if activate else "stored, not active"
    click.echo(
        f"imported {bank.instrument} bank {bank.version}: "
        f"{len(bank.brackets)} brackets, {items} items ({state})"
    )


@cli.command("sweep")
@click.option("--every", type=int, default=0, help="Repeat every N seconds (0: once).")
def sweep(every: int) -> None:
    """Expire sessions, codes and stale questionnaires; settle, confirm and archive messages."""
    while True:
        try:
            click.echo(json.dumps(run_sweep()))
        except Exception as exc:
            if not every:
                raise
            current_app.logger.warning("sweep failed: %s", type(exc).__name__)
        if not every:
            return
        time.sleep(every)


def run_sweep() -> dict[str, int]:
    settings = current_app.config["SETTINGS"]
    now = services().clock.now()
    # No index creation here: init-db made them before the instances started, and one
    # made while requests run can wedge FerretDB (chatbot/db/indexes.py).
    report = {
        "sessionsDeleted": SessionRepository(mongo.db).delete_expired(now),
        "codesDeleted": VerificationRepository(mongo.db).delete_expired(now),
        "leasesDeleted": LeaseRepository(mongo.db).delete_expired(now),
        "questionnairesAbandoned": QuestionnaireRepository(mongo.db).abandon_started_before(
            now - timedelta(hours=settings.resume_window_hours), now
        ),
    }
    # Settle and apply the delivery receipts first, so that messages reach the archive
    # with their final status.
    settled = run_settle(settings.settle_after_s, settings.settle_batch_size)
    report.update({f"messages{k.capitalize()}": v for k, v in settled.items()})
    report["messagesDelivered"] = ReceiptLog(mongo.db).apply(settings.settle_batch_size)
    # WhatsApp send outcomes and status webhooks (chatbot/db/whatsapp.py).
    events = WhatsAppEvents(mongo.db)
    report["whatsappEventsApplied"], changed = events.apply(now, settings.settle_batch_size)
    chat = services().chat
    for user_id in changed:  # their cached first history page shows the old status
        chat.history_cache.drop(user_id)
        chat.on_change(user_id, False)
    events.forget_sent_before(now - timedelta(days=WHATSAPP_SENT_IDS_DAYS))
    archived = run_archive(settings.archive_after_days, settings.archive_batch_size)
    report["messagesArchived"] = archived["moved"]
    if settings.reminders_enabled:
        # Last: a Redis outage stops the reminders (they wait in MongoDB), not the sweep.
        try:
            report.update(services().reminders.run(now))
        except redis.RedisError as exc:
            current_app.logger.warning("reminders not run: %s", type(exc).__name__)
    if archived["unverified"]:
        current_app.logger.warning(
            "archive stopped: %d messages not verified in the archive", archived["unverified"]
        )
    return report


def run_settle(after_s: int, batch_size: int) -> dict[str, int]:
    """Settle inbound messages older than `after_s` seconds (see chatbot/db/settle.py)."""
    now = services().clock.now()
    return MessageSettler(mongo.db).settle(now - timedelta(seconds=after_s), now, batch_size)


def run_archive(older_than_days: int, batch_size: int) -> dict[str, int]:
    """Move messages older than `older_than_days` to `messages_archive` (chatbot/db/archive.py)."""
    cutoff = services().clock.now() - timedelta(days=older_than_days)
    return MessageArchive(mongo.db).archive_before(cutoff, batch_size)


@cli.command("settle-messages")
@click.option(
    "--older-than-seconds",
    type=click.IntRange(min=1),
    default=None,
    help="Settle inbound messages received this long ago (default SETTLE_AFTER_S).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Messages per batch (default SETTLE_BATCH_SIZE).",
)
def settle_messages(older_than_seconds: int | None, batch_size: int | None) -> None:
    """Mark old `received` inbound messages `handled` (a reply exists) or `failed`."""
    settings = current_app.config["SETTINGS"]
    report = run_settle(
        older_than_seconds or settings.settle_after_s, batch_size or settings.settle_batch_size
    )
    click.echo(json.dumps(report))


@cli.command("archive-messages")
@click.option(
    "--older-than-days",
    type=click.IntRange(min=1),
    default=None,
    help="Archive messages created this many days ago or earlier (default ARCHIVE_AFTER_DAYS).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Messages per batch (default ARCHIVE_BATCH_SIZE).",
)
def archive_messages(older_than_days: int | None, batch_size: int | None) -> None:
    """Move old messages to `messages_archive` in verified batches (safe to re-run)."""
    settings = current_app.config["SETTINGS"]
    report = run_archive(
        older_than_days or settings.archive_after_days,
        batch_size or settings.archive_batch_size,
    )
    click.echo(json.dumps(report))
    if report["unverified"]:
        raise click.ClickException(
            f"{report['unverified']} messages could not be verified in messages_archive; "
            "they were left in messages and the run stopped"
        )


@cli.command("grant-role")
@click.argument("phone")
@click.argument("role", type=click.Choice(["parent", "health_worker", "admin"]))
@click.option("--posyandu", "posyandu", multiple=True, metavar="CODE",
              help="a posyandu the health worker serves (repeat for several)")  # fmt: skip
def grant_role(phone: str, role: str, posyandu: tuple[str, ...]) -> None:
    """Give a registered phone number a role (health workers and admins sign in like
    parents); a health worker sees the children of the posyandu named with --posyandu."""
    try:
        number = normalise_phone(phone)
    except InvalidPhoneError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        granted = services().staff.grant_role(number, role, list(posyandu))
    except NotFoundError as exc:
        message = str(exc)
        if message.startswith("No user"):
            message = f"{number} has not started a chat yet"
        raise click.ClickException(message) from None
    except InvalidInputError as exc:
        raise click.ClickException(str(exc)) from None
    where = f" of {', '.join(granted['posyandu'])}" if granted["posyandu"] else ""
    click.echo(f"{number} is now {role}{where}")


@cli.command("add-posyandu")
@click.argument("code")
@click.argument("name")
def add_posyandu(code: str, name: str) -> None:
    """Create a posyandu with the short code its cadres give parents (e.g. MAWAR01)."""
    try:
        created = services().staff.add_posyandu(code, name)
    except (ConflictError, InvalidInputError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{created['code']}: {created['name']}")


@cli.command("whatsapp-notify")
@click.argument("phone")
@click.argument("template")
@click.argument("values", nargs=-1)
@click.option("--ref", default=None, help="Names this notification (default: a new one).")
def whatsapp_notify(phone: str, template: str, values: tuple[str, ...], ref: str | None) -> None:
    """Send the approved TEMPLATE to PHONE (international form, e.g. 6281234567890), with
    its parameters as name=value (e.g. child=Ayu "when=9 bulan"); the queue workers send
    it. How an operator tries a template; the reminders send them the same way."""
    settings = current_app.config["SETTINGS"]
    if not settings.whatsapp_enabled:
        raise click.ClickException("WHATSAPP_ENABLED is off")
    found = services()
    wa_id = phone.lstrip("+")
    if not wa_id.isdigit():
        raise click.BadParameter("a phone number in international form", param_hint="PHONE")
    if template not in found.templates.available():
        raise click.BadParameter(
            f"one of {', '.join(found.templates.available())}", param_hint="TEMPLATE"
        )
    pairs = dict(v.partition("=")[::2] for v in values)
    try:
        message = found.whatsapp.notify(wa_id, template, pairs, ref or secrets.token_hex(8))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="VALUES") from None
    if message is None:
        raise click.ClickException(f"a notification {ref} is queued already")
    found.tasks.enqueue_send(wa_id)
    click.echo(f"queued {message['id']}: {message['text']}")


@cli.command("whatsapp-worker")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Worker threads (default WHATSAPP_WORKER_THREADS).",
)
def whatsapp_worker(threads: int | None) -> None:
    """Run the WhatsApp queue's tasks (turns and sends) until TERM or INT.

    One process; run several for more (supervisord's numprocs, WHATSAPP_WORKERS). A stop
    lets the tasks in flight finish first; a task of a killed worker runs again on
    another (chatbot/tasks.py). Every worker also runs the requeuer.
    """
    settings = current_app.config["SETTINGS"]
    if not settings.whatsapp_enabled:
        raise click.ClickException("WHATSAPP_ENABLED is off: there is nothing to work on")
    queue = services().tasks
    worker = queue.worker(threads or settings.whatsapp_worker_threads)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    requeuer = threading.Thread(target=queue.run_requeuer, args=(stop,), daemon=True)
    worker.start()
    requeuer.start()
    click.echo(f"whatsapp worker: {worker.worker_threads} threads on queue whatsapp", err=True)
    stop.wait()
    click.echo("whatsapp worker: stopping (tasks in flight finish first)", err=True)
    worker.stop()
    queue.close()
