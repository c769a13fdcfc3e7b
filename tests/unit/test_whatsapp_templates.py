"""The message templates: Meta's template shape, the approved translations and names."""

from __future__ import annotations

import pytest

from chatbot.channels.templates import TemplateConfigError, Templates
from chatbot.errors import ConfigError


def test_a_template_is_metas_shape_with_its_parameters_in_order():
    rendered = Templates("id,en").render(
        "6281200000001", "screening_due", "en", {"when": "at 9 months", "child": "Ayu"}
    )
    assert rendered.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "6281200000001",
        "type": "template",
        "template": {
            "name": "kpsp_screening_due",
            "language": {"code": "en"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Ayu"},
                        {"type": "text", "text": "at 9 months"},
                    ],
                }
            ],
        },
    }
    assert rendered.text.startswith("Hello! It is time for Ayu's development screening")
    assert "(at 9 months)" in rendered.text and "{{" not in rendered.text


def test_a_language_not_approved_gets_the_first_approved_one():
    rendered = Templates("id").render("62812", "referral_follow_up", "en", {"child": "Budi"})
    assert rendered.language == "id"
    assert rendered.body["template"]["language"] == {"code": "id"}
    assert "Budi" in rendered.text and "puskesmas" in rendered.text


def test_parameters_lose_what_meta_refuses_and_missing_ones_are_an_error():
    templates = Templates("id,en")
    rendered = templates.render("62812", "referral_follow_up", "id", {"child": "Ayu\n  Putri\t"})
    assert rendered.body["template"]["components"][0]["parameters"][0]["text"] == "Ayu Putri"
    with pytest.raises(ValueError, match="when"):
        templates.render("62812", "screening_due", "id", {"child": "Ayu"})


def test_names_approved_under_another_name_are_configured():
    templates = Templates("id", "screening_due=posyandu_reminder_v2")
    body = templates.render("62812", "screening_due", "id", {"child": "A", "when": "B"}).body
    assert body["template"]["name"] == "posyandu_reminder_v2"
    other = templates.render("62812", "referral_follow_up", "id", {"child": "A"}).body
    assert other["template"]["name"] == "kpsp_referral_follow_up"


@pytest.mark.parametrize(
    ("languages", "names", "problem"),
    [
        ("", "", "names no language"),
        ("id,fr", "", "no body in fr"),
        ("id", "nope=x", "key=name"),
        ("id", "screening_due=", "key=name"),
    ],
)
def test_configuration_naming_something_unknown_stops_start_up(languages, names, problem):
    with pytest.raises(TemplateConfigError, match=problem) as raised:
        Templates(languages, names)
    assert isinstance(raised.value, ConfigError)
