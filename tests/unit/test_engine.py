"""The conversation engine, driven message by message with an in-memory store."""

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from chatbot.screening import engine
from chatbot.screening.conversation import Conversation
from chatbot.screening.engine import COMMANDS, STEPS, Engine, Step, normalise, parse_date
from chatbot.screening.state import CONTEXT_FIELDS
from chatbot.screening.words import load_vocabulary
from tests.unit.fakes import FakeStore, ShippedBanks

SCREENING = Path(__file__).resolve().parents[2] / "chatbot" / "screening"

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


@pytest.mark.parametrize(
    ("word", "normalised"),
    [("ya", "ya"), ("Y", "y"), ("iya", "iya"), ("YES", "yes"), ("1", "1"), (" Ya! ", "ya")],
)
def test_yes_words(word, normalised):
    assert normalise(word) == normalised
    assert load_vocabulary().means(normalised, "yes")


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


# --- the table of steps -------------------------------------------------------------------
def test_every_step_has_a_row_and_every_transition_names_a_step():
    assert set(STEPS) == set(Step)
    for step, spec in STEPS.items():
        assert spec.goes_to <= set(STEPS), step
        assert spec.context <= set(CONTEXT_FIELDS), step
        assert spec.own_commands <= {c.name for c in COMMANDS}, step
        if isinstance(spec.back, Step):
            assert spec.back in STEPS, step
    for command in COMMANDS:
        assert command.goes_to <= set(STEPS), command.name
    # Every step the code names exists (a wrong name would fail only when its line runs).
    named = {
        name
        for path in SCREENING.glob("*.py")
        for name in re.findall(r"\bStep\.([A-Z][A-Z_]*)", path.read_text())
    }
    assert len(named) == len(Step)
    assert named <= {s.name for s in Step}


def test_every_transition_taken_is_declared_in_the_table(monkeypatch):
    """Drive conversations through every path; each move must be one the table lists."""
    seen = set()
    turn = {"active": False}
    original_goto, original_dispatch = Conversation.goto, engine.dispatch

    def goto(self, step, **context):
        if turn["active"]:
            seen.add((self.state.step, step))
        original_goto(self, step, **context)

    def dispatch(c, m):
        turn["active"] = True
        try:
            original_dispatch(c, m)
        finally:
            turn["active"] = False

    monkeypatch.setattr(Conversation, "goto", goto)
    monkeypatch.setattr(engine, "dispatch", dispatch)

    store = FakeStore()
    chat = Chat(store)
    chat.register()
    chat.say("kembali")  # name -> menu
    chat.say("2")
    chat.say("Budi")
    chat.say("back")  # birth -> name
    chat.say("Budi")
    chat.say("01-04-2025")
    chat.say("1")
    chat.say("38")
    chat.say("tidak")  # confirm -> menu
    chat.add_child("Siti", "01-01-2024")
    chat.say("ya")  # confirm -> question
    chat.say("ya")
    chat.say("menu")  # question -> menu (paused)
    chat.say("1")  # menu -> resume
    chat.say("1")  # resume -> question
    chat.say("menu")
    chat.say("skrining")
    chat.say("2")  # resume -> start over -> question
    chat.say("restart")
    chat.say("1")  # menu -> choose child
    chat.say("kembali")  # choose child -> menu
    chat.say("1")
    chat.say("1")  # choose -> question
    for _ in range(10):
        chat.say("ya")  # question -> menu (result)
    chat.say("riwayat")
    chat.say("bahasa")  # menu -> language
    chat.say("1")  # language -> menu
    chat.add_child("Bayi", "01-02-2026")
    chat.say("ya")  # confirm -> menu (too young)
    later = Chat(store, now=NOW + timedelta(hours=1))
    later.say("halo")
    for text in ("1", "1", "ya", "menu", "1", "menu"):
        later.say(text)
    commands = set().union(*(c.goes_to for c in COMMANDS))
    for before, after in seen:
        spec = STEPS[before]
        back = {spec.back} if isinstance(spec.back, Step) else set()
        # Any question whose subject is gone falls back to the menu (Conversation.ask).
        assert after in spec.goes_to | back | commands | {Step.MENU}, (before, after)
    assert len(seen) >= 15


# --- what parents stumbled on -------------------------------------------------------------
def test_menu_in_the_middle_keeps_the_questionnaire_and_offers_to_continue():
    chat = Chat()
    start_screening(chat)
    chat.say("ya")
    chat.say("tidak")
    chat.say("menu")
    assert chat.step == "menu"
    questionnaire = chat.store.in_progress("u1")
    assert questionnaire is not None and len(questionnaire["answers"]) == 2
    offer = chat.say("1")
    assert "Skrining Budi belum selesai (2/10 terjawab)" in offer
    assert chat.step == "resume"
    assert "Pertanyaan 3/10" in chat.say("1")
    chat.say("ya")
    assert [a["answer"] for a in chat.store.in_progress("u1")["answers"]] == [True, False, True]


def test_leaving_then_starting_over_abandons_the_old_questionnaire_only_then():
    chat = Chat()
    start_screening(chat)
    chat.say("ya")
    first = chat.store.in_progress("u1")["id"]
    chat.say("menu")
    chat.say("3")  # history in between: still resumable
    chat.say("english")
    assert "unfinished (1/10 answered)" in chat.say("screen")
    assert "Question 1/10" in chat.say("2")
    assert chat.store.questionnaires[first]["status"] == "abandoned"
    assert chat.store.in_progress("u1")["id"] != first


def test_menu_at_the_resume_question_keeps_it_resumable():
    store = FakeStore()
    chat = Chat(store)
    start_screening(chat)
    chat.say("ya")
    later = Chat(store, now=NOW + timedelta(hours=2))
    assert "belum selesai" in later.say("halo")
    later.say("menu")
    assert "belum selesai (1/10 terjawab)" in later.say("1")


def test_a_finished_questionnaire_is_not_offered_again():
    chat = Chat()
    start_screening(chat)
    chat.say("menu")
    chat.say("1")
    chat.say("1")  # continue
    for _ in range(10):
        chat.say("ya")
    assert "Pertanyaan 1/10" in chat.say("1")  # a new screening, no offer


def test_help_and_language_at_screen_now_repeat_that_question():
    chat = Chat()
    chat.register()
    assert "Mulai skrining Budi sekarang?" in chat.add_child("Budi", "01-04-2025")
    reply = chat.say("bantuan")
    assert "Perintah" in reply and "Mulai skrining Budi sekarang?" in reply
    assert chat.step == "confirm_screen"
    assert "Start screening Budi now?" in chat.say("english")
    assert "Question 1/10" in chat.say("yes")


@pytest.mark.parametrize(
    "name", ["Muh. Rizki", "A. Rahman", "I Gede Putu", "O'Neil", "Siti-Nur", "Ni Luh Ayu."]
)
def test_names_with_initials_dots_apostrophes_and_hyphens_are_accepted(name):
    chat = Chat()
    chat.register()
    assert f"tanggal lahir {name}" in chat.say(name)
    assert chat.state["form"]["name"] == name


@pytest.mark.parametrize("name", ["1234", "<b>Budi</b>", "Budi2", "Budi;", "x" * 51, "--"])
def test_names_that_are_not_names_are_refused_with_the_rule(name):
    chat = Chat()
    chat.register()
    reply = chat.say(name)
    assert "huruf" in reply and "1–50" in reply
    assert chat.step == "child_name"


def test_the_next_routine_date_says_it_is_about_that_age():
    chat = Chat()
    start_screening(chat)  # Budi, 11 months 9 days: the 9-month form
    for _ in range(10):
        result = chat.say("ya")
    # The first day the age rounds to 12 months: 11 months 16 days.
    assert "mulai 17-03-2026, saat Budi berusia sekitar 12 bulan" in result
    assert "skrining rutin mulai 17-03-2026" in chat.say("riwayat")


def test_the_next_routine_date_in_english():
    chat = Chat()
    chat.register(language="2")
    chat.add_child("Budi", "01-04-2025")
    chat.say("yes")
    for _ in range(10):
        result = chat.say("yes")
    assert "from 17-03-2026, when Budi is about 12 months old" in result


def test_too_young_says_when_the_first_screening_is_due_plainly():
    chat = Chat()
    chat.register()
    chat.add_child("Bayi", "01-02-2026")
    reply = chat.say("ya")
    assert "mulai 17-04-2026, saat Bayi berusia sekitar 3 bulan" in reply


def test_a_preterm_childs_dates_speak_of_corrected_age():
    chat = Chat()
    chat.register()
    chat.add_child("Rina", "01-01-2026", weeks="30")  # 2m9d, 10 weeks early
    reply = chat.say("ya")
    assert "saat usia koreksi Rina sekitar 3 bulan" in reply


# --- the child form as slots ---------------------------------------------------------------
def test_back_in_the_child_form_reopens_the_previous_slot():
    chat = Chat()
    chat.register()
    chat.say("Budi")
    chat.say("01-04-2025")
    assert "tanggal lahir Budi" in chat.say("kembali")
    assert chat.step == "child_birth"
    chat.say("02-04-2025")
    chat.say("1")
    chat.say("38")
    assert chat.store.list_children("u1")[0]["birthDate"] == date(2025, 4, 2)


def test_the_gestation_button_is_understood_in_both_languages():
    for language, unknown in (("1", "tidak tahu"), ("2", "don't know")):
        chat = Chat()
        chat.register(language=language)
        chat.say("Budi")
        chat.say("01-04-2025")
        chat.say("1")
        turn = chat.engine.handle(chat.user, chat.state, "x", chat.now)
        assert turn.replies[-1].quick_replies[0]["value"] == unknown  # the invalid hint has it
        assert "Budi" in chat.say(unknown)
        assert chat.step == "confirm_screen"
        assert chat.store.list_children("u1")[0]["gestationalWeeks"] is None


def test_number_words_choose_like_numbers():
    chat = Chat()
    chat.register()
    chat.say("Budi")
    chat.say("01-04-2025")
    chat.say("dua")  # girl
    chat.say("38")
    chat.say("tidak")
    assert chat.store.list_children("u1")[0]["sex"] == "female"
    assert chat.say("tiga")  # history
    assert chat.step == "menu"
    assert chat.say("²")  # a digit that is no number: asked again, no crash
    assert chat.step == "menu"


def test_every_button_of_every_question_is_understood():
    """Tapping any quick reply of a question never gets the "cannot read" answer."""

    def buttons(chat):
        """The current question's quick replies (asked again by "help")."""
        turn = chat.engine.handle(chat.user, chat.state, "help", chat.now)
        return turn.replies[-1].quick_replies

    for language in ("1", "2"):
        chat = Chat()
        chat.say("halo")
        chat.say("ya")
        chat.say(language)
        assert chat.step == "child_name"
        for text in ("Budi", "01-04-2025"):
            chat.say(text)
        for quick in buttons(chat):  # sex: 1, 2
            turn = chat.engine.handle(chat.user, chat.state, quick["value"], chat.now)
            assert turn.state["step"] == "child_gestation", quick
        chat.say("1")
        for quick in buttons(chat):  # gestation: don't know
            turn = chat.engine.handle(chat.user, chat.state, quick["value"], chat.now)
            assert turn.state["step"] == "confirm_screen", quick
        chat.say("38")
        chat.say("ya")
        for quick in buttons(chat):  # yes, no, back
            turn = chat.engine.handle(chat.user, chat.state, quick["value"], chat.now)
            assert turn.state["step"] == "question"
            assert "YA atau TIDAK" not in turn.replies[0].text
            assert "YES or NO" not in turn.replies[0].text


def test_a_replayed_back_is_not_applied_twice():
    chat = Chat()
    start_screening(chat)
    chat.say("ya")
    chat.say("ya")
    before = dict(chat.state)
    chat.say("kembali")
    assert len(chat.store.in_progress("u1")["answers"]) == 1
    chat.state = before
    assert "Pertanyaan 2/10" in chat.say("kembali")
    assert len(chat.store.in_progress("u1")["answers"]) == 1


# --- the stored state ---------------------------------------------------------------------
def test_the_state_is_versioned():
    chat = Chat()
    chat.register()
    assert chat.state["v"] == 2


def test_a_state_from_the_previous_release_is_continued():
    """Version 1 had no "v"; the confirm step had no form (the name is read again)."""
    chat = Chat()
    chat.register()
    chat.add_child("Budi", "01-04-2025")
    child_id = chat.state["childId"]
    chat.state = {"step": "confirm_screen", "childId": child_id}
    assert "Mulai skrining Budi sekarang?" in chat.say("bantuan")
    chat.state = {"step": "child_sex", "form": {"name": "Ani", "birthDate": "2025-04-01"}}
    chat.say("2")
    chat.say("tidak tahu")
    assert [c["name"] for c in chat.store.list_children("u1")] == ["Budi", "Ani"]
    chat.say("ya")
    chat.state = {"step": "question", "questionnaireId": chat.state["questionnaireId"]}
    assert "Pertanyaan 2/10" in chat.say("ya")


def test_an_unknown_step_shows_the_menu_without_reading_the_message_as_a_choice():
    chat = Chat()
    chat.register()
    chat.state = {"step": "some_old_step", "whatever": 1}
    reply = chat.say("2")  # would be "add a child" at the menu
    assert reply.startswith("Menu:") and chat.step == "menu"
    assert "Pilih bahasa" in chat.say("4")  # the next message is a menu choice
