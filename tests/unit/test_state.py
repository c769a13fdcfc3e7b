"""The conversation state: typed, versioned, and every stored version read back."""

from datetime import date

from chatbot.screening.state import STATE_VERSION, ChildForm, ConversationState, Step


def test_a_state_survives_its_document():
    state = ConversationState(
        step=Step.CONFIRM_SCREEN,
        form=ChildForm("Budi", date(2025, 4, 1), "male", None),
        child_id="c1",
        paused="q1",
    )
    doc = state.to_doc()
    assert doc == {
        "v": STATE_VERSION,
        "step": "confirm_screen",
        "form": {"name": "Budi", "birthDate": "2025-04-01", "sex": "male"},
        "childId": "c1",
        "paused": "q1",
    }
    assert ConversationState.from_doc(doc) == state


def test_version_1_documents_are_read():
    for step in Step:
        state = ConversationState.from_doc({"step": step.value})
        assert state.step is step and not state.lost
    old = ConversationState.from_doc({"step": "question", "questionnaireId": "q1", "asked": 3})
    assert (old.questionnaire_id, old.asked) == ("q1", 3)
    form = ConversationState.from_doc(
        {"step": "child_sex", "form": {"name": "Ani", "birthDate": "2025-04-01"}}
    ).form
    assert form == ChildForm("Ani", date(2025, 4, 1))


def test_an_unknown_step_is_the_menu_marked_lost():
    state = ConversationState.from_doc({"step": "ask_weight", "form": {}})
    assert state.step is Step.MENU and state.lost
    assert "lost" not in state.to_doc()
    assert ConversationState.from_doc({}).step is Step.MENU  # no step at all: the menu
    assert not ConversationState.from_doc({}).lost


def test_moving_keeps_only_the_context_the_step_declares():
    state = ConversationState(
        step=Step.QUESTION, questionnaire_id="q1", asked=2, paused="q0", form=ChildForm("x")
    )
    moved = state.moved_to(Step.MENU, frozenset())
    assert (moved.questionnaire_id, moved.asked, moved.form) == (None, None, None)
    assert moved.paused == "q0"  # not a step's context: kept until resumed or abandoned
    kept = state.moved_to(Step.RESUME, frozenset({"questionnaire_id"}))
    assert kept.questionnaire_id == "q1" and kept.asked is None


def test_the_answer_pointer_is_the_only_field_an_answer_changes():
    """sessions.digest leaves out `asked`: an answer turn must not change anything else,
    or it would write the session to MongoDB (the answer turn's budget)."""
    state = ConversationState(step=Step.QUESTION, questionnaire_id="q1", asked=2)
    after = ConversationState(step=Step.QUESTION, questionnaire_id="q1", asked=3)
    before_doc, after_doc = state.to_doc(), after.to_doc()
    before_doc.pop("asked"), after_doc.pop("asked")
    assert before_doc == after_doc
