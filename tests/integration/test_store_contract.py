"""The engine's Store contract (chatbot/screening/store.py), run against every implementation.

The same cases run against the in-memory fake the engine's unit tests use and the
MongoDB-backed RepositoryStore production uses, the latter both within one session
(the questionnaire in progress travels with it) and with the session lost between
calls (everything read back from the database).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from chatbot.chat.children import ChildDirectory
from chatbot.chat.reminders import ReminderSchedule
from chatbot.chat.sessions import Pending
from chatbot.chat.store import RepositoryStore
from chatbot.chat.users import UserDirectory
from chatbot.db.users import UserRepository
from chatbot.extensions import mongo, redis_store
from tests.unit.fakes import FakeStore

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
UNKNOWN_ID = "0" * 24  # well formed, never issued
SUMMARY = ("category", "riskLevel", "yesCount", "itemCount", "nextAction", "nextDueAt")


class PerCall:
    """A RepositoryStore made afresh for every call, as every turn makes its own."""

    def __init__(self, make: Callable[[], RepositoryStore]) -> None:
        self._make = make

    def __getattr__(self, name: str) -> Any:
        return getattr(self._make(), name)


class Backend:
    def __init__(self, store: Any, users: tuple[str, str], one_user: bool = False) -> None:
        self.store = store
        self.user, self.other = users
        # A store bound to one user's session answers in_progress for that user only.
        self.one_user = one_user


@pytest.fixture(params=["fake", "mongo-session", "mongo-no-session"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "fake":
        yield Backend(FakeStore(), ("u1", "u2"))
        return
    app = request.getfixturevalue("app")
    with app.app_context():
        settings = app.config["SETTINGS"]
        cache = app.extensions["chatbot.cache"]
        users = UserRepository(mongo.db)
        ids = tuple(
            users.get_or_create(phone, NOW, language="id")[0]["id"]
            for phone in ("+6281300000201", "+6281300000202")
        )
        shared = Pending()

        def make() -> RepositoryStore:
            pending = shared if request.param == "mongo-session" else Pending()
            return RepositoryStore(
                mongo.db,
                UserDirectory(mongo.db, cache, settings.session_cache_s),
                ChildDirectory(mongo.db, cache, settings.session_cache_s),
                pending,
                NOW,
                ReminderSchedule(mongo.db, redis_store, settings),
            )

        yield Backend(PerCall(make), ids, one_user=request.param == "mongo-session")


def add_child(b: Backend, name: str = "Budi", user: str | None = None) -> dict[str, Any]:
    return b.store.add_child(
        user or b.user, name=name, birthDate=date(2025, 4, 1), sex="male", gestationalWeeks=None
    )


def start(b: Backend, child: dict[str, Any], started: datetime = NOW) -> dict[str, Any]:
    return b.store.start_questionnaire(
        {
            "childId": child["id"],
            "childName": child["name"],
            "userId": b.user,
            "instrument": "kpsp",
            "bankVersion": "test",
            "bracket": 9,
            "age": {"chronological": {"months": 11, "days": 9}, "corrected": None},
            "referenceBirthDate": date(2025, 4, 1),
            "screeningDate": date(2026, 3, 10),
            "answers": [],
            "itemCount": 10,
            "startedAt": started,
        }
    )


def answers(n: int) -> list[dict[str, Any]]:
    return [{"number": i, "domains": ["social"], "answer": True} for i in range(1, n + 1)]


def result(completed: datetime = NOW) -> dict[str, Any]:
    return {
        "answers": answers(10),
        "yesCount": 10,
        "itemCount": 10,
        "category": "appropriate",
        "riskLevel": "low",
        "noByDomain": {},
        "nextAction": "routine",
        "nextDueAt": date(2026, 5, 17),
        "completedAt": completed,
    }


def test_a_child_is_added_listed_and_read_by_its_owner_only(backend):
    b = backend
    assert b.store.list_children(b.user) == []
    budi = add_child(b)
    siti = add_child(b, "Siti")
    assert isinstance(budi["id"], str)
    assert budi["name"] == "Budi"
    assert budi["birthDate"] == date(2025, 4, 1) and type(budi["birthDate"]) is date
    assert (budi["sex"], budi["gestationalWeeks"], budi["lastScreening"]) == ("male", None, None)
    assert [c["name"] for c in b.store.list_children(b.user)] == ["Budi", "Siti"]  # oldest first
    found = b.store.get_child(b.user, siti["id"])
    assert found["name"] == "Siti" and type(found["birthDate"]) is date
    assert b.store.get_child(b.other, budi["id"]) is None
    assert b.store.list_children(b.other) == []


def test_a_started_questionnaire_is_in_progress_as_given(backend):
    b = backend
    assert b.store.in_progress(b.user) is None
    started = start(b, add_child(b))
    assert isinstance(started["id"], str) and started["status"] == "in_progress"
    for found in (b.store.in_progress(b.user), b.store.get_questionnaire(started["id"])):
        assert found["id"] == started["id"] and found["status"] == "in_progress"
        assert found["answers"] == [] and found["itemCount"] == 10
        assert type(found["screeningDate"]) is date
        assert type(found["referenceBirthDate"]) is date
        assert found["startedAt"] == NOW and found["startedAt"].tzinfo is not None
    if not b.one_user:
        assert b.store.in_progress(b.other) is None


def test_unknown_and_empty_ids_are_none(backend):
    b = backend
    assert b.store.get_questionnaire("") is None
    assert b.store.get_questionnaire(UNKNOWN_ID) is None
    assert b.store.get_child(b.user, UNKNOWN_ID) is None
    assert b.store.last_completed(UNKNOWN_ID) is None


def test_answers_are_replaced_and_saving_them_again_changes_nothing(backend):
    b = backend
    q = start(b, add_child(b))
    b.store.save_answers(q["id"], answers(3))
    b.store.save_answers(q["id"], answers(3))
    assert b.store.get_questionnaire(q["id"])["answers"] == answers(3)
    b.store.save_answers(q["id"], answers(2))  # "back"
    assert b.store.in_progress(b.user)["answers"] == answers(2)


def test_returned_documents_are_copies(backend):
    b = backend
    child = add_child(b)
    q = start(b, child)
    b.store.save_answers(q["id"], answers(2))
    for found in (b.store.in_progress(b.user), b.store.get_questionnaire(q["id"])):
        found["answers"].append({"number": 99})
        found["answers"][0]["answer"] = False
        found["status"] = "changed"
    listed = b.store.list_children(b.user)
    listed[0]["name"] = "changed"
    assert b.store.get_questionnaire(q["id"])["answers"] == answers(2)
    assert b.store.in_progress(b.user)["status"] == "in_progress"
    assert b.store.get_child(b.user, child["id"])["name"] == "Budi"


def test_completing_stores_the_result_and_the_childs_summary(backend):
    b = backend
    child = add_child(b)
    q = start(b, child)
    b.store.save_answers(q["id"], answers(9))
    fields = result()
    b.store.complete_questionnaire(q["id"], **copy.deepcopy(fields))
    b.store.complete_questionnaire(q["id"], **copy.deepcopy(fields))  # a retried turn
    assert b.store.in_progress(b.user) is None
    done = b.store.get_questionnaire(q["id"])
    assert done["status"] == "completed"
    assert done["answers"] == answers(10) and done["riskLevel"] == "low"
    assert done["completedAt"] == NOW
    last = b.store.last_completed(child["id"])
    assert last["id"] == q["id"] and last["nextAction"] == "routine"
    summary = b.store.get_child(b.user, child["id"])["lastScreening"]
    for name in SUMMARY:
        assert name in summary, name
    assert (summary["riskLevel"], summary["yesCount"], summary["completedAt"]) == ("low", 10, NOW)
    assert b.store.list_children(b.user)[0]["lastScreening"]["riskLevel"] == "low"


def test_last_completed_is_the_most_recent(backend):
    b = backend
    child = add_child(b)
    first = start(b, child)
    b.store.complete_questionnaire(first["id"], **result(NOW))
    second = start(b, child, NOW + timedelta(minutes=5))
    later = {**result(NOW + timedelta(minutes=9)), "nextAction": "rescreen_2_weeks"}
    b.store.complete_questionnaire(second["id"], **later)
    assert b.store.last_completed(child["id"])["id"] == second["id"]


def test_only_a_questionnaire_in_progress_changes(backend):
    b = backend
    q = start(b, add_child(b))
    b.store.complete_questionnaire(q["id"], **result())
    b.store.save_answers(q["id"], answers(1))
    b.store.abandon_questionnaire(q["id"])
    done = b.store.get_questionnaire(q["id"])
    assert done["status"] == "completed" and done["answers"] == answers(10)


def test_abandoning_leaves_nothing_in_progress_and_is_safe_to_repeat(backend):
    b = backend
    child = add_child(b)
    q = start(b, child)
    b.store.abandon_questionnaire(q["id"])
    b.store.abandon_questionnaire(q["id"])
    assert b.store.get_questionnaire(q["id"])["status"] == "abandoned"
    assert b.store.in_progress(b.user) is None
    again = start(b, child, NOW + timedelta(minutes=1))
    b.store.abandon_in_progress(b.user)
    b.store.abandon_in_progress(b.user)
    assert b.store.get_questionnaire(again["id"])["status"] == "abandoned"
    assert b.store.in_progress(b.user) is None


def test_in_progress_is_the_newest_of_several(backend):
    b = backend
    child = add_child(b)
    start(b, child, NOW)
    newer = start(b, child, NOW + timedelta(minutes=3))
    assert b.store.in_progress(b.user)["id"] == newer["id"]


def test_setting_user_fields_is_safe_to_repeat(backend):
    b = backend
    b.store.set_user(b.user, language="en")
    b.store.set_user(b.user, language="en", consentAt=NOW)


def test_completing_an_abandoned_questionnaire_writes_no_summary(backend, request):
    b = backend
    child = add_child(b)
    q = start(b, child)
    b.store.abandon_questionnaire(q["id"])
    b.store.complete_questionnaire(q["id"], **result())
    assert b.store.get_questionnaire(q["id"])["status"] == "abandoned"
    assert b.store.get_child(b.user, child["id"])["lastScreening"] is None
