"""The development code sender shows the code, never the whole phone number."""

from __future__ import annotations

import logging

from chatbot.auth import LogCodeSender


def test_the_log_code_sender_masks_the_phone(caplog):
    with caplog.at_level(logging.WARNING, logger="chatbot.auth"):
        LogCodeSender().send("+6281234567890", "123456", "id")
    (record,) = caplog.records
    assert record.otp_code == "123456"
    assert record.phone == "+62812*****890"
    assert "+6281234567890" not in record.getMessage()
    assert "+6281234567890" not in str(record.__dict__)
