"""Operator commands: `flask --app wsgi chatbot <command>`."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from chatbot.screening.bank import BankError, load_bank_file

cli = AppGroup("chatbot", help="Operate the chatbot service.")


@cli.command("init-db")
def init_db() -> None:
    """Create every index (idempotent) and say whether sessions have a TTL index."""
    from chatbot.db.indexes import ensure_indexes, server_has_ttl
    from chatbot.extensions import mongo

    report = ensure_indexes(mongo.db)
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
    from chatbot.chat.service import utcnow
    from chatbot.db.banks import BankRepository
    from chatbot.extensions import mongo

    try:
        bank = load_bank_file(path)
    except BankError as exc:
        raise click.ClickException(str(exc)) from None
    data = json.loads(path.read_text(encoding="utf-8"))
    BankRepository(mongo.db).save(bank.version, data, utcnow(), activate)
    items = sum(len(b.items) for b in bank.brackets)
    state = "active" if activate else "stored, not active"
    click.echo(
        f"imported {bank.instrument} bank {bank.version}: "
        f"{len(bank.brackets)} brackets, {items} items ({state})"
    )


@cli.command("sweep")
@click.option("--every", type=int, default=0, help="Repeat every N seconds (0: once).")
def sweep(every: int) -> None:
    """Delete expired sessions and codes; abandon questionnaires past the resume window."""
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
    from chatbot.chat.service import utcnow
    from chatbot.db.indexes import ensure_indexes
    from chatbot.db.questionnaires import QuestionnaireRepository
    from chatbot.db.sessions import SessionRepository
    from chatbot.db.verifications import VerificationRepository
    from chatbot.extensions import mongo

    settings = current_app.config["SETTINGS"]
    now = utcnow()
    # Cheap when they exist; creates them if the database was down at start-up.
    ensure_indexes(mongo.db)
    return {
        "sessionsDeleted": SessionRepository(mongo.db).delete_expired(now),
        "codesDeleted": VerificationRepository(mongo.db).delete_expired(now),
        "questionnairesAbandoned": QuestionnaireRepository(mongo.db).abandon_started_before(
            now - timedelta(hours=settings.resume_window_hours), now
        ),
    }


@cli.command("grant-role")
@click.argument("phone")
@click.argument("role", type=click.Choice(["parent", "health_worker", "admin"]))
def grant_role(phone: str, role: str) -> None:
    """Give a registered phone number a role (health workers and admins sign in like parents)."""
    from chatbot.db.users import UserRepository
    from chatbot.extensions import mongo
    from chatbot.phone import InvalidPhoneError, normalise_phone

    try:
        number = normalise_phone(phone)
    except InvalidPhoneError as exc:
        raise click.ClickException(str(exc)) from None
    if not UserRepository(mongo.db).set_role(number, role):
        raise click.ClickException(f"{number} has not started a chat yet")
    click.echo(f"{number} is now {role}")
