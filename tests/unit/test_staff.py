"""The health workers' scope and month list rules (chatbot/chat/staff.py), pure parts."""

from datetime import UTC, date, datetime

import pytest

from chatbot.chat.staff import Scope, StaffService, month_bounds, safe_cell
from chatbot.errors import ForbiddenError, InvalidInputError, NotFoundError

TODAY = date(2031, 3, 10)
MARCH = (date(2031, 3, 1), date(2031, 4, 1))
LATER = datetime(2031, 3, 2, tzinfo=UTC)  # after the screening of 2031-03-01
VISIT = {"kind": "referral_visited", "at": LATER}
CALLED = {"kind": "contacted", "at": LATER}
ANSWERED = {"visited": True, "answeredAt": LATER}  # the parent said yes in the chat


def child(action="routine", due=None, **extra):
    due_at = None if due is None else datetime.combine(due, datetime.min.time(), UTC)
    last = {"nextAction": action, "completedAt": datetime(2031, 3, 1, tzinfo=UTC),
            "nextDueAt": due_at}  # fmt: skip
    return {"lastScreening": last, **extra}


@pytest.mark.parametrize(
    ("doc", "status"),
    [
        ({"lastScreening": None}, "due"),
        (child("routine", date(2031, 3, 20)), "due"),
        (child("routine", date(2031, 3, 9)), "overdue"),
        (child("routine", date(2030, 12, 1)), "overdue"),
        (child("routine", date(2031, 4, 1)), None),
        (child("routine", None), None),
        (child("rescreen_2_weeks", date(2031, 3, 15)), "rescreen"),
        (child("refer", date(2031, 3, 8)), "referred"),
        (child("refer", date(2031, 9, 1), lastContact=VISIT), None),
        (child("refer", date(2031, 3, 5), referral=ANSWERED), None),
        (child("refer", None, lastContact=CALLED), "referred"),
    ],
)
def test_each_child_falls_in_one_group_of_the_month(doc, status):
    assert StaffService._status(doc, TODAY, *MARCH) == status


def test_a_later_month_lists_what_will_be_due_by_then():
    april = (date(2031, 4, 1), date(2031, 5, 1))
    assert StaffService._status(child("routine", date(2031, 3, 26)), TODAY, *april) == "due"
    assert StaffService._status(child("routine", date(2031, 4, 26)), TODAY, *april) == "due"


def test_a_worker_is_scoped_to_their_posyandu_and_an_admin_to_one_at_a_time():
    worker = Scope.of({"role": "health_worker", "posyandu": ["A", "B"]})
    assert worker.narrowed(None, []) == ["A", "B"]
    assert worker.narrowed("B", []) == ["B"]
    with pytest.raises(ForbiddenError):
        worker.narrowed("C", [])
    assert Scope.of({"role": "health_worker"}).narrowed(None, []) == []
    admin = Scope.of({"role": "admin"})
    assert admin.codes is None and not admin.phones
    assert admin.narrowed(None, ["A", "C"]) == ["A"]
    assert admin.narrowed("C", ["A", "C"]) == ["C"]
    with pytest.raises(NotFoundError):
        admin.narrowed("Z", ["A", "C"])


def test_month_bounds():
    assert month_bounds(None, TODAY) == MARCH
    assert month_bounds("2031-12", TODAY) == (date(2031, 12, 1), date(2032, 1, 1))
    with pytest.raises(InvalidInputError):
        month_bounds("2031-13", TODAY)


@pytest.mark.parametrize("name", ["=HYPERLINK(x)", "+1", "-1", "@SUM(A1)"])
def test_a_cell_a_spreadsheet_would_run_is_kept_as_text(name):
    assert safe_cell(name) == "'" + name
    assert safe_cell("Budi") == "Budi"
