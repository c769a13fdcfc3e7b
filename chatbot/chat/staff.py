"""What a health worker or an admin may see and do: the posyandu scope of every staff read.

A health worker is a member of one or more posyandu (`users.posyandu`, given by an admin
with `grant-role` or the admin API) and sees only their children: the scope is part of
every query (`ChildRepository.get_in_posyandu`, `of_posyandu`, `_scoped`), as ownership
is for parents, and a child outside it is a 404, never a 403 that would tell it exists.
An admin sees every child, and no parent's phone number: numbers go only to the health
workers of the child's own posyandu.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from chatbot.clock import Clock
from chatbot.db import Database
from chatbot.db.children import ChildRepository
from chatbot.db.posyandu import (
    CONTACT_KINDS,
    ContactRepository,
    PosyanduRepository,
    normal_code,
)
from chatbot.db.questionnaires import QuestionnaireRepository
from chatbot.db.users import UserRepository
from chatbot.errors import ForbiddenError, InvalidCursorError, InvalidInputError, NotFoundError
from chatbot.screening.age import add_months, age_between
from chatbot.screening.texts import Texts

# The month list's groups, in the page's order (docs/worker.md says what each means).
STATUSES = ("due", "overdue", "rescreen", "referred")
EXPORT_HEADER = ("posyandu", "child", "sex", "age_months", "date", "result", "action")


@dataclass(frozen=True)
class Scope:
    """Whose children a staff user sees: these posyandu, or all (`codes` None, an admin)."""

    codes: list[str] | None
    phones: bool  # parents' numbers shown (members of the child's posyandu only)

    @classmethod
    def of(cls, user: dict[str, Any]) -> Scope:
        if user["role"] == "admin":
            return cls(None, phones=False)
        return cls(list(user.get("posyandu") or []), phones=True)

    def sees(self, child: dict[str, Any]) -> bool:
        return self.codes is None or child.get("posyandu") in self.codes

    def narrowed(self, posyandu: str | None, every: list[str]) -> list[str]:
        """The posyandu a list is of: the one asked for (if in scope), else all of the
        scope's (an admin's default: the first posyandu, not 100,000 children)."""
        allowed = every if self.codes is None else self.codes
        if posyandu is not None:
            if posyandu not in allowed:
                if self.codes is None:
                    raise NotFoundError(f"No posyandu with code {posyandu}.")
                raise ForbiddenError(f"You are not a member of posyandu {posyandu}.")
            return [posyandu]
        return allowed if self.codes is not None else allowed[:1]


def month_bounds(month: str | None, today: date) -> tuple[date, date]:
    """'2031-03' -> (2031-03-01, 2031-04-01); None: this month."""
    if month is None:
        start = today.replace(day=1)
    else:
        try:
            start = date.fromisoformat(month + "-01")
        except ValueError:
            raise InvalidInputError("month must be YYYY-MM.", code="validation_error") from None
    return start, add_months(start, 1)


def _age_months(birth: date | None, on: date) -> int | None:
    if birth is None or on < birth:
        return None
    return age_between(birth, on).months


class StaffService:
    """The health workers' lists, a child's history, contacts and the monthly export."""

    def __init__(
        self,
        db: Database[dict[str, Any]],
        clock: Clock,
        timezone: str,
        on_change: Callable[[str, bool], None],
        grant_user: Callable[[str, str, list[str]], bool],
    ) -> None:
        self.grant_user = grant_user
        self.children = ChildRepository(db)
        self.questionnaires = QuestionnaireRepository(db)
        self.posyandu = PosyanduRepository(db)
        self.contacts = ContactRepository(db)
        self.users = UserRepository(db)
        self.clock = clock
        self.zone = ZoneInfo(timezone)
        self.on_change = on_change
        self.texts = Texts()

    def today(self) -> date:
        return self.clock.now().astimezone(self.zone).date()

    # --- posyandu ---------------------------------------------------------------------
    def posyandu_of(self, user: dict[str, Any]) -> list[dict[str, Any]]:
        scope = Scope.of(user)
        return self.posyandu.list(scope.codes)

    def _codes(self, user: dict[str, Any], posyandu: str | None) -> tuple[Scope, list[str]]:
        scope = Scope.of(user)
        every = [p["code"] for p in self.posyandu.list()] if scope.codes is None else []
        return scope, scope.narrowed(posyandu, every)

    def add_posyandu(self, code: str, name: str) -> dict[str, Any]:
        normal = normal_code(code)
        if normal is None:
            raise InvalidInputError("code is not valid.", code="validation_error")
        return self.posyandu.add(normal, name.strip(), self.clock.now())

    def grant_role(self, phone: str, role: str, posyandu: list[str]) -> dict[str, Any]:
        """Through `grant_user` (the user directory: its cached user must see the new role
        at once). Every posyandu must exist; only a health worker has any."""
        codes = sorted({normal_code(p) or p for p in posyandu})
        if codes and role != "health_worker":
            raise InvalidInputError("Only a health worker belongs to a posyandu.",
                                    code="validation_error")  # fmt: skip
        known = {p["code"] for p in self.posyandu.list(codes)} if codes else set()
        for code in codes:
            if code not in known:
                raise NotFoundError(f"No posyandu with code {code}.")
        if not self.grant_user(phone, role, codes):
            raise NotFoundError("No user has that phone number.")
        return {"phoneNumber": phone, "role": role, "posyandu": codes}

    # --- the month list ---------------------------------------------------------------
    def month_list(
        self,
        user: dict[str, Any],
        *,
        month: str | None,
        posyandu: str | None,
        statuses: list[str],
        q: str | None,
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        """This month's children due, overdue, to re-screen and referred, by name.

        One read of the posyandu's active children (a few thousand at most, indexed by
        posyandu), grouped here: the counts need every row anyway."""
        scope, codes = self._codes(user, posyandu)
        today = self.today()
        start, end = month_bounds(month, today)
        rows = []
        counts = dict.fromkeys(STATUSES, 0)
        for child in self.children.of_posyandu(codes):
            status = self._status(child, today, start, end)
            if status is None:
                continue
            counts[status] += 1
            if status in statuses and (not q or q.casefold() in child["name"].casefold()):
                rows.append((child, status))
        rows.sort(key=lambda r: (r[0]["name"].casefold(), r[0]["id"]))
        if cursor is not None:  # the last row's id: the page after it
            ids = [c["id"] for c, _ in rows]
            if cursor not in ids:
                raise InvalidCursorError("The cursor is not valid (the list changed?).")
            rows = rows[ids.index(cursor) + 1 :]
        page = rows[:limit]
        phones = self._phones([c for c, _ in page], scope)
        out = [self._row(c, status, today, phones) for c, status in page]
        next_cursor = page[-1][0]["id"] if len(rows) > limit else None
        return {"month": start.strftime("%Y-%m"), "counts": counts, "children": out,
                "nextCursor": next_cursor}  # fmt: skip

    @staticmethod
    def _status(child: dict[str, Any], today: date, start: date, end: date) -> str | None:
        last = child.get("lastScreening")
        if not last:
            return "due"  # never screened: the first screening is due
        if last.get("nextAction") == "refer":
            contact = child.get("lastContact") or {}
            referral = child.get("referral") or {}
            completed = last.get("completedAt")
            visited = (
                contact.get("kind") == "referral_visited" and contact["at"] >= completed
            ) or (referral.get("visited") and referral["answeredAt"] >= completed)
            # Visited: the health professional it was referred to follows the child now;
            # off the cadres' list until its next screening.
            return None if visited else "referred"
        if last.get("nextAction") == "rescreen_2_weeks":
            return "rescreen"
        due = last.get("nextDueAt")
        if due is None:
            return None  # past the last KPSP age
        due_on = due.date() if isinstance(due, datetime) else due
        if due_on >= end:
            return None  # due after this month
        # Before today: overdue. Else due (in this month, or for a later month picked,
        # due by then: what the cadres plan that month's posyandu day for).
        return "overdue" if due_on < today else "due"

    def _phones(self, children: list[dict[str, Any]], scope: Scope) -> dict[str, str]:
        if not scope.phones or not children:
            return {}
        return self.users.phones_for([c["userId"] for c in children])

    def _row(
        self, child: dict[str, Any], status: str | None, today: date, phones: dict[str, str]
    ) -> dict[str, Any]:
        last = child.get("lastScreening")
        due = last.get("nextDueAt") if last else None
        row: dict[str, Any] = {
            "id": child["id"],
            "name": child["name"],
            "sex": child["sex"],
            "birthDate": child["birthDate"],
            "ageMonths": _age_months(child["birthDate"], today),
            "posyandu": child.get("posyandu"),
            "status": status,
            "dueAt": due.date() if isinstance(due, datetime) else due,
            "lastScreening": None
            if not last
            else {
                "completedAt": last.get("completedAt"),
                "category": last.get("category"),
                "riskLevel": last.get("riskLevel"),
                "nextAction": last.get("nextAction"),
                "noDomains": sorted((last.get("noByDomain") or {}).keys()),
            },
            "lastContact": child.get("lastContact"),
        }
        if child["userId"] in phones:
            row["parentPhone"] = phones[child["userId"]]
        return row

    # --- one child ----------------------------------------------------------------------
    def _child(self, user: dict[str, Any], child_id: str) -> tuple[Scope, dict[str, Any]]:
        scope = Scope.of(user)
        child = self.children.get_in_posyandu(child_id, scope.codes)
        if child is None:
            raise NotFoundError("No such child.")
        return scope, child

    def child_history(self, user: dict[str, Any], child_id: str) -> dict[str, Any]:
        scope, child = self._child(user, child_id)
        today = self.today()
        start, end = month_bounds(None, today)
        screenings = [
            {
                "completedAt": s.get("completedAt"),
                "ageMonths": _age_months(s.get("referenceBirthDate"), s["screeningDate"])
                if s.get("screeningDate")
                else None,
                "category": s.get("category"),
                "riskLevel": s.get("riskLevel"),
                "yesCount": s.get("yesCount"),
                "itemCount": s.get("itemCount"),
                "nextAction": s.get("nextAction"),
                "noDomains": sorted((s.get("noByDomain") or {}).keys()),
            }
            for s in self.questionnaires.history_for_child(child_id)
        ]
        phones = self._phones([child], scope)
        return {
            "child": self._row(child, self._status(child, today, start, end), today, phones),
            "screenings": screenings,
            "contacts": self.contacts.for_child(child_id),
        }

    def add_contact(
        self, user: dict[str, Any], child_id: str, kind: str, note: str
    ) -> dict[str, Any]:
        if kind not in CONTACT_KINDS:  # the schema says so too
            raise InvalidInputError("kind is not known.", code="validation_error")
        _, child = self._child(user, child_id)
        contact = self.contacts.add(
            child_id, child.get("posyandu"), kind, note, user["id"], self.clock.now()
        )
        self.on_change(child["userId"], True)  # the lists (staff counter) show it
        return contact

    # --- the monthly export ---------------------------------------------------------------
    def export_rows(
        self, user: dict[str, Any], month: str | None, posyandu: str | None, language: str
    ) -> tuple[str, Iterator[str]]:
        """The month's screenings as CSV lines, generated as the cursor reads them (the
        posyandu's children are one read; their screenings stream); results and actions
        worded in `language`. Returns (file name, lines)."""
        _, codes = self._codes(user, posyandu)
        start, _ = month_bounds(month, self.today())
        month_key = start.strftime("%Y-%m")
        name = f"kpsp-{'-'.join(codes) or 'none'}-{month_key}.csv"
        zone = self.zone

        def lines() -> Iterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)

            def line(values: tuple[Any, ...]) -> str:
                buffer.seek(0)
                buffer.truncate()
                writer.writerow(values)
                return buffer.getvalue()

            yield "\ufeff" + line(EXPORT_HEADER)  # the BOM: spreadsheets then read UTF-8
            # Each row from the screening alone (it carries the child's name, sex and
            # age then): no read of the children, and what the month's report needs is
            # what was true on the day.
            for code in codes:
                for s in self.questionnaires.completed_in_month(code, month_key):
                    on = s["completedAt"].astimezone(zone).date()
                    age = (s.get("age") or {}).get("chronological") or {}
                    yield line((
                        code,
                        safe_cell(s.get("childName") or ""),
                        s.get("childSex") or "",
                        age.get("months", ""),
                        on.isoformat(),
                        self.texts(f"category_{s['category']}", language),
                        self._action(s, language),
                    ))  # fmt: skip

        return name, lines()

    def _action(self, screening: dict[str, Any], language: str) -> str:
        action, due = screening.get("nextAction"), screening.get("nextDueAt")
        if action == "refer":
            return self.texts("action_refer", language)
        if due is None:
            return self.texts("action_routine_none", language)
        on = (due.date() if isinstance(due, datetime) else due).strftime("%d-%m-%Y")
        return self.texts(f"action_{action}", language, date=on)


def safe_cell(value: str) -> str:
    """A name a spreadsheet would run as a formula ('=HYPERLINK(…)') is kept as text
    (the chat's name rule refuses these today; the export does not rely on it)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
