"""The conversation engine, driven message by message with an in-memory store."""

from datetime import UTC, date, datetime, timedelta

import pytest

from chatbot.screening.engine import Engine, normalise, parse_date
from tests.unit.fakes import FakeStore, ShippedBanks

NOW = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)  # 10:00 in Jakarta


class Chat:
    """One parent talking to the engine; keeps the state between messages like the service."""

    def __init__(self, store=None, now=NOW):
        self.store = store or FakeStore()
        self.engine = Engine(self.store, ShippedBanks())
        self.user = {"id": "u1", "language": "id", "consentAt": None}
        self.state = None
        self.now = now

    def say(self, text):
        self.user.update(self.store.users.get("u1", {}))
        turn = self.engine.handle(self.user, self.state, text, self.now)
        self.state = turn.state
        return "\n".join(r.text for r in turn.replies)

    @property
    def step(self):
        return self.state["step"]

    def register(self, language="1"):
        self.say("halo")
        self.say("ya")
        self.say(language)

    def add_child(self, name, born, sex="1", weeks="38"):
        if self.step == "menu":
            self.say("2")
        self.say(name)
        self.say(born)
        self.say(sex)
        return self.say(weeks)


def test_greeting_asks_consent_and_nothing_is_stored_without_it():
    chat = Chat()
    assert "setuju" in chat.say("halo")
    assert chat.step == "consent"
    assert "tidak menyimpan" in chat.say("tidak")
    assert chat.say("menu") and chat.step == "consent"  # commands wait for consent
    assert "consentAt" not in chat.store.users.get("u1", {})
    chat.say("ya")
    assert chat.store.users["u1"]["consentAt"] == NOW
    assert chat.step == "language"


def test_full_screening_of_a_term_child_ends_with_result_and_next_step():
    chat = Chat()
    chat.register()
    assert chat.step == "child_name"
    reply = chat.add_child("Siti Aminah", "01-04-2025", sex="2")  # 11m9d -> 9-month form
    assert "tersimpan" in reply
    intro = chat.say("ya")
    assert "formulir 9 bulan" in intro and "11 bulan 9 hari" in intro
    assert "Pertanyaan 1/10" in intro
    for _ in range(9):
        chat.say("ya")
    result = chat.say("tidak")
    assert "SESUAI" in result and "9/10" in result
    assert "12 bulan" in result  # the next routine screening
    assert "bukan diagnosis" in result
    assert chat.step == "menu"
    child = chat.store.list_children("u1")[0]
    assert child["lastScreening"]["riskLevel"] == "low"


@pytest.mark.parametrize("word", ["ya", "Y", "iya", "YES", "1", " Ya! "])
def test_yes_words(word):
    assert normalise(word) in {"ya", "y", "iya", "yes", "1"}


def start_screening(chat, born="01-04-2025"):
    chat.register()
    chat.add_child("Budi", born)
    chat.say("ya")


def test_unrecognised_answers_are_asked_again():
    chat = Chat()
    start_screening(chat)
    reply = chat.say("mungkin")
    assert "Jawab YA atau TIDAK" in reply and "Pertanyaan 1/10" in reply
    q = chat.store.in_progress("u1")
    assert q["answers"] == []


def test_back_changes_the_last_answer():
    chat = Chat()
    start_screening(chat)
    chat.say("ya")
    chat.say("tidak")
    assert "Pertanyaan 2/10" in chat.say("kembali")
    chat.say("ya")
    answers = chat.store.in_progress("u1")["answers"]
    assert [a["answer"] for a in answers] == [True, True]


def test_back_at_the_first_question_changes_nothing():
    chat = Chat()
    start_screening(chat)
    assert "pertanyaan pertama" in chat.say("back")


def test_doubtful_result_asks_for_rescreen_in_two_weeks_then_refers():
    chat = Chat()
    start_screening(chat)
    for answer in ["tidak", "tidak"] + ["ya"] * 8:
        result = chat.say(answer)
    assert "MERAGUKAN" in result and "24-03-2026" in result
    chat.say("1")  # screen again (one child: chosen automatically)
    for answer in ["tidak", "tidak"] + ["ya"] * 8:
        result = chat.say(answer)
    assert "MERAGUKAN" in result and "puskesmas" in result  # doubtful twice -> refer


def test_possible_deviation_is_referred_with_domains():
    chat = Chat()
    start_screening(chat)
    for answer in ["tidak"] * 5 + ["ya"] * 5:
        result = chat.say(answer)
    assert "KEMUNGKINAN ADA PENYIMPANGAN" in result
    assert "5 jawaban TIDAK" in result and "gerak kasar" in result


def test_preterm_child_is_screened_at_corrected_age():
    chat = Chat()
    chat.register()
    chat.add_child("Rina", "01-09-2025", weeks="30")  # 6m9d chronological; 10 weeks early -> 4m0d
    intro = chat.say("ya")
    assert "usia koreksi 4 bulan 0 hari" in intro
    assert "formulir 3 bulan" in intro


def test_too_young_is_refused_kindly_with_the_first_screening_date():
    chat = Chat()
    chat.register()
    chat.add_child("Bayi", "01-02-2026")
    reply = chat.say("ya")
    assert "dimulai pada usia 3 bulan" in reply and "17-04-2026" in reply
    assert chat.step == "menu"
    assert chat.store.in_progress("u1") is None


def test_too_old_is_refused_kindly():
    chat = Chat()
    chat.register()
    chat.add_child("Andi", "01-01-2020")
    reply = chat.say("ya")
    assert "3–72 bulan" in reply and chat.step == "menu"


def test_several_children_are_chosen_by_number():
    chat = Chat()
    chat.register()
    chat.add_child("Budi", "01-04-2025")
    chat.say("tidak")
    chat.add_child("Siti", "01-01-2024")
    chat.say("tidak")
    listing = chat.say("1")
    assert "1. Budi" in listing and "2. Siti" in listing
    assert "Balas dengan nomor" in chat.say("9")
    intro = chat.say("2")
    assert "Skrining Siti" in intro and "formulir 24 bulan" in intro


def test_language_switch_at_any_point_repeats_the_question_in_english():
    chat = Chat()
    start_screening(chat)
    reply = chat.say("english")
    assert "Language set to English" in reply and "Question 1/10" in reply
    assert chat.store.users["u1"]["language"] == "en"
    assert "Pertanyaan 1/10" in chat.say("indonesia")


def test_language_step_accepts_the_language_name():
    chat = Chat()
    chat.say("halo")
    chat.say("ya")
    assert "name" in chat.say("english")
    assert chat.step == "child_name"


def test_words_for_menu_choices_consent_and_weeks():
    chat = Chat()
    chat.say("halo")
    chat.say("setuju")
    assert chat.step == "language"
    chat.say("1")
    chat.say("Budi")
    chat.say("25 Desember 2024")
    chat.say("laki-laki")
    assert "tersimpan" in chat.say("38 minggu")
    assert chat.store.list_children("u1")[0]["gestationalWeeks"] == 38
    chat.say("tidak")
    assert "Budi:" in chat.say("riwayat")
    assert "Pilih bahasa" in chat.say("bahasa")


def test_english_registration_and_help():
    chat = Chat()
    chat.register(language="2")
    assert chat.say("help").startswith("Commands")
    assert chat.step == "child_name"


def test_restart_abandons_the_questionnaire_in_progress():
    chat = Chat()
    start_screening(chat)
    chat.say("ya")
    assert "mulai dari awal" in chat.say("restart")
    assert chat.step == "menu"
    assert chat.store.in_progress("u1") is None


def test_invalid_child_details_are_asked_again():
    chat = Chat()
    chat.register()
    assert "huruf" in chat.say("1234")
    chat.say("Budi")
    assert "belum bisa saya baca" in chat.say("31-02-2025")
    assert "belum bisa saya baca" in chat.say("01-01-2030")  # in the future
    chat.say("01-04-2025")
    assert "Balas 1" in chat.say("x")
    chat.say("L")
    assert "antara 22 dan 44" in chat.say("50")
    assert "tersimpan" in chat.say("tidak tahu")
    assert chat.store.list_children("u1")[0]["gestationalWeeks"] is None


def test_birth_dates_are_accepted_on_29_february():
    chat = Chat(now=datetime(2028, 2, 29, 3, 0, tzinfo=UTC))
    chat.register()
    chat.say("Budi")
    assert "Jenis kelamin" in chat.say("01-01-2027")


def test_expired_session_offers_to_resume_within_the_window():
    store = FakeStore()
    chat = Chat(store)
    start_screening(chat)
    chat.say("ya")
    chat.say("ya")
    later = Chat(store, now=NOW + timedelta(hours=3))  # state None: a new session
    assert "belum selesai (2/10 terjawab)" in later.say("halo")
    assert "Pertanyaan 3/10" in later.say("1")


def test_resume_start_over_begins_a_new_questionnaire():
    store = FakeStore()
    chat = Chat(store)
    start_screening(chat)
    chat.say("ya")
    first = store.in_progress("u1")["id"]
    later = Chat(store, now=NOW + timedelta(hours=1))
    later.say("halo")
    assert "Pertanyaan 1/10" in later.say("2")
    assert store.questionnaires[first]["status"] == "abandoned"
    assert store.in_progress("u1")["id"] != first


def test_unfinished_questionnaire_is_abandoned_after_the_window():
    store = FakeStore()
    chat = Chat(store)
    start_screening(chat)
    later = Chat(store, now=NOW + timedelta(hours=25))
    later.say("halo")
    assert later.step == "menu"
    assert store.in_progress("u1") is None


def test_a_replayed_answer_is_not_recorded_twice():
    """The first attempt saved the answer, then failed before the session was saved."""
    chat = Chat()
    start_screening(chat)
    before = dict(chat.state)
    chat.say("ya")
    assert len(chat.store.in_progress("u1")["answers"]) == 1
    chat.state = before  # the session as it was: its save was lost
    reply = chat.say("ya")  # the client retries the same message
    assert len(chat.store.in_progress("u1")["answers"]) == 1
    assert "Pertanyaan 2/10" in reply


def test_a_replayed_child_is_not_added_twice():
    chat = Chat()
    chat.register()
    for text in ("Budi", "01-04-2025", "1"):
        chat.say(text)
    before = dict(chat.state)
    chat.say("38")
    chat.state = before
    chat.say("38")
    assert len(chat.store.list_children("u1")) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("25-12-2024", date(2024, 12, 25)),
        ("25/12/2024", date(2024, 12, 25)),
        ("2024-12-25", date(2024, 12, 25)),
        ("5.1.2025", date(2025, 1, 5)),
        ("25 desember 2024", date(2024, 12, 25)),
        ("3 mei 2025", date(2025, 5, 3)),
        ("25 dec 2024", date(2024, 12, 25)),
        ("31 feb 2024", None),
        ("25 foo 2024", None),
        ("31-02-2024", None),
        ("kemarin", None),
    ],
)
def test_parse_date(text, expected):
    assert parse_date(text) == expected
