"""Phone numbers are normalised to E.164."""

import pytest

from chatbot.phone import InvalidPhoneError, mask_phone, normalise_phone


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("081234567890", "+6281234567890"),
        ("6281234567890", "+6281234567890"),
        ("+62 812-3456-7890", "+6281234567890"),
        ("0062 812 3456 7890", "+6281234567890"),
        ("+14155550123", "+14155550123"),
    ],
)
def test_local_and_international_forms(raw, e164):
    assert normalise_phone(raw) == e164


@pytest.mark.parametrize("raw", ["", "12", "hello", "0812", "+62 1", "+6281234567890123456"])
def test_invalid_numbers(raw):
    with pytest.raises(InvalidPhoneError):
        normalise_phone(raw)


def test_mask_keeps_only_the_ends():
    assert mask_phone("+6281234567890") == "+62812*****890"
