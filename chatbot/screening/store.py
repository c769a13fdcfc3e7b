"""What the engine needs from persistence and from the question banks.

Production implements `Store` over the repositories and the session's snapshot of
the questionnaire in progress (chatbot/chat/store.py); the unit tests use an
in-memory fake (tests/unit/fakes.py). tests/integration/test_store_contract.py runs
the same cases against both.

The contract, for every implementation:

- Ids are strings. Returned documents are copies: changing one changes nothing stored.
- Children carry `id`, `userId`, `name`, `birthDate` (a `date`), `sex`,
  `gestationalWeeks` (None when unknown) and `lastScreening` (None until a
  questionnaire of theirs completes).
- Questionnaires carry what `start_questionnaire` was given (dates stay `date`,
  `startedAt` a timezone-aware `datetime`) plus `id` and `status`
  (`in_progress`, `completed` or `abandoned`).
- A turn may be retried after a partial failure (FerretDB has no transactions), so
  calls that only set a state are safe to repeat: `set_user`, `save_answers`,
  `complete_questionnaire`, `abandon_questionnaire`, `abandon_in_progress`.
  `add_child` and `start_questionnaire` insert: the engine looks before it repeats
  them (the same child by name, birth date and sex; one questionnaire in progress,
  the previous one abandoned first).
- Only a questionnaire `in_progress` changes: saving answers to, completing or
  abandoning a completed or abandoned one changes nothing.
- A store may be bound to one user's turn (production's keeps that user's
  questionnaire in progress from the session): the engine passes only the turn's
  user to it.
"""

from __future__ import annotations

from typing import Any, Protocol

from chatbot.screening.bank import Bank


class Store(Protocol):
    def set_user(self, user_id: str, **fields: Any) -> None:
        """Set fields of the user (`consentAt`, `language`). Safe to repeat."""
        ...

    def list_children(self, user_id: str) -> list[dict[str, Any]]:
        """The user's active children, oldest first."""
        ...

    def get_child(self, user_id: str, child_id: str) -> dict[str, Any] | None:
        """The child if it is the user's, else None (never another user's child)."""
        ...

    def add_child(self, user_id: str, **fields: Any) -> dict[str, Any]:
        """Insert a child (`name`, `birthDate`, `sex`, `gestationalWeeks`); return it.
        Not safe to repeat: the engine first looks for the same child."""
        ...

    def link_posyandu(self, user_id: str, code: str) -> dict[str, Any] | None:
        """Link the user, and their active children, to the posyandu of this code (as
        the parent typed it); return it (`code`, `name`), or None for an unknown code.
        Children added later join the user's posyandu. Safe to repeat."""
        ...

    def in_progress(self, user_id: str) -> dict[str, Any] | None:
        """The user's questionnaire in progress (the newest if several), or None."""
        ...

    def get_questionnaire(self, questionnaire_id: str) -> dict[str, Any] | None:
        """A questionnaire by id, whatever its status; None for an empty or unknown id."""
        ...

    def start_questionnaire(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Insert `doc` as a questionnaire in progress; return it with `id` and `status`."""
        ...

    def save_answers(self, questionnaire_id: str, answers: list[dict[str, Any]]) -> None:
        """Replace the answers of a questionnaire in progress. Safe to repeat."""
        ...

    def complete_questionnaire(self, questionnaire_id: str, **fields: Any) -> None:
        """Store the result `fields` and mark the questionnaire completed. Also writes
        the child's `lastScreening` summary (`category`, `riskLevel`, `yesCount`,
        `itemCount`, `nextAction`, `nextDueAt`, `completedAt`), which the health
        workers' lists read; the user has nothing in progress afterwards. Safe to repeat."""
        ...

    def abandon_questionnaire(self, questionnaire_id: str) -> None:
        """Mark a questionnaire in progress abandoned. Safe to repeat."""
        ...

    def abandon_in_progress(self, user_id: str) -> None:
        """Abandon whatever the user has in progress (perhaps nothing). Safe to repeat."""
        ...

    def last_completed(self, child_id: str) -> dict[str, Any] | None:
        """The child's most recently completed questionnaire, or None."""
        ...

    def record_referral(self, user_id: str, child_id: str, visited: bool, at: Any) -> None:
        """The parent's answer to the referral's follow-up question, on the child
        (`referral: {visited, answeredAt}`; only the user's own child). Safe to repeat."""
        ...


class BankSource(Protocol):
    def active(self) -> Bank:
        """The bank new screenings use."""
        ...

    def get(self, version: str) -> Bank:
        """The bank of a given version: a questionnaire is always continued with its own."""
        ...
