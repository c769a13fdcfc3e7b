"""The web page shows API errors in the parent's language (a real Chromium, through nginx)."""

import pytest

from tests.e2e.test_conversations import logged_code
from tests.support import HttpChat

pytestmark = pytest.mark.e2e


def wrong_code_message(stack, page, phone: str) -> str:
    """Start with a known number, type a wrong code; the text the page shows."""
    HttpChat(stack.url, phone).say("halo")  # the number now has data: a code is asked
    page.set_default_timeout(10_000)
    page.goto(stack.url + "/")
    page.fill("#phone", phone)
    page.click("#start button")
    page.wait_for_selector("#verify:not([hidden])")
    code = logged_code(stack, "+62" + phone[1:])
    page.fill("#code", f"{(int(code) + 1) % 10**6:06d}")
    page.click("#verify button")
    # A selector, not wait_for_function: the page's CSP refuses the eval that one needs.
    page.wait_for_selector("#verify-error:not(:empty)")
    return page.inner_text("#verify-error")


def test_an_indonesian_browser_shows_the_error_in_indonesian(stack, browser):
    context = browser.new_context(locale="id-ID")
    message = wrong_code_message(stack, context.new_page(), "081600000101")
    assert message == "Kode salah atau sudah kedaluwarsa."
    context.close()


def test_the_language_chosen_before_on_this_device_wins(stack, browser):
    context = browser.new_context(locale="en-US")
    # A parent who chose Indonesian when they last signed in on this phone.
    context.add_init_script("localStorage.setItem('chatbot.language', 'id')")
    message = wrong_code_message(stack, context.new_page(), "081600000102")
    assert message.startswith("Kode salah")
    context.close()


def test_an_english_browser_shows_the_error_in_english(stack, browser):
    context = browser.new_context(locale="en-US")
    message = wrong_code_message(stack, context.new_page(), "081600000103")
    assert message == "The code is wrong or has expired."
    context.close()
