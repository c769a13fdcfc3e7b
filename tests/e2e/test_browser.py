"""The web chat page in a real headless Chromium, through nginx."""

import pytest

from tests.support import TODDLER_TODAY

pytestmark = pytest.mark.e2e


def open_chat(stack, browser, phone):
    """Open the page and submit a phone number; return the page."""
    page = browser.new_page()
    page.set_default_timeout(10_000)
    page.goto(stack.url + "/")
    page.fill("#phone", phone)
    page.click("#start button")
    return page


def test_parent_screens_a_child_in_the_browser(stack, browser, tmp_path):
    page = open_chat(stack, browser, "081600000001")
    page.wait_for_selector("#log li.bot")
    assert "setuju" in page.inner_text("#log")
    assert not page.is_visible("#start")
    assert not page.is_visible("#verify")

    def answered(action):
        """Do `action`, then wait for the parent's bubble and at least one reply."""
        count = page.locator("#log li").count()
        action()
        # A locator, not wait_for_function: the page's CSP refuses the eval that one needs.
        page.locator("#log li").nth(count + 1).wait_for()

    def tap(label):
        answered(lambda: page.click(f"#quick button:text-is('{label}')"))

    def type_(text):
        page.fill("#text", text)
        answered(lambda: page.press("#text", "Enter"))

    tap("Ya")
    tap("1")
    type_("Dewi")
    type_(TODDLER_TODAY)
    tap("2")
    type_("38")
    tap("Ya")
    for _ in range(10):
        tap("Ya")
    log = page.inner_text("#log")
    assert "SESUAI" in log
    assert "bukan diagnosis" in log
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)

    # A reload keeps the conversation (token in sessionStorage, history from the API).
    page.reload()
    page.wait_for_selector("#log li.bot")
    assert "SESUAI" in page.inner_text("#log")
    page.close()


def test_known_number_asks_for_a_code_in_the_browser(stack, browser):
    from tests.e2e.test_conversations import logged_code
    from tests.support import HttpChat

    HttpChat(stack.url, "081600000002").say("halo")  # the number now has data
    page = open_chat(stack, browser, "081600000002")
    page.wait_for_selector("#verify:not([hidden])")
    page.fill("#code", "999999" if logged_code(stack, "+6281600000002") != "999999" else "888888")
    page.click("#verify button")
    page.wait_for_selector("#verify-error:text('wrong')")
    page.fill("#code", logged_code(stack, "+6281600000002"))
    page.click("#verify button")
    page.wait_for_selector("#chat:not([hidden]) #log li")
    assert "halo" in page.inner_text("#log")
    page.close()


def test_the_page_works_under_its_content_security_policy(stack, browser):
    """The page's CSP has no 'unsafe-inline': it runs with nothing refused."""
    page = browser.new_page()
    refused = []
    page.on(
        "console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None
    )
    page.set_default_timeout(10_000)
    response = page.goto(stack.url + "/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    page.fill("#phone", "081600000003")
    page.click("#start button")
    page.wait_for_selector("#log li.bot")
    # The stylesheet applied (a refused one would leave the form unstyled and hidden flags shown).
    assert not page.is_visible("#start")
    assert refused == []
    page.close()
