"""The health workers' page (/worker/) in a real headless Chromium, through nginx.

Two posyandu, a health worker of each (and one of both), parents linked to each with the
chat word "posyandu": each worker signs in with a one-time code and sees, opens, marks
and exports only their own posyandu's children.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.test_conversations import logged_code, screen
from tests.harness import ROOT, http
from tests.support import TODDLER_TODAY, HttpChat

pytestmark = pytest.mark.e2e

CODE_A, CODE_B = "KAMBOJA81", "ANGGREK82"
# Numbers of this module only (+62818…, each with its own last three digits: the code
# sender logs them masked to those).
WORKER_A, WORKER_B, WORKER_A_KEYS, WORKER_BOTH = (
    "081800000811",
    "081800000812",
    "081800000813",
    "081800000814",
)
NOT_A_WORKER = "081800000831"
# name -> (parent's number, posyandu, answers of the 21-month form, 10 items)
CHILDREN = {
    "Ayu Lestari": ("081800000821", CODE_A, ["ya"] * 5 + ["tidak"] * 5),  # 5 yes: referred
    "Bagus": ("081800000822", CODE_A, ["tidak"] * 3 + ["ya"] * 7),  # doubtful: re-screen
    "Citra": ("081800000823", CODE_B, ["tidak"] * 10),  # referred
    "Dimas": ("081800000824", CODE_B, ["tidak"] * 2 + ["ya"] * 8),  # re-screen
}
HEADER = ["posyandu", "child", "sex", "age_months", "date", "result", "action"]


def flask_cli(stack, *args: str) -> str:
    """`flask --app wsgi chatbot …` with the stack's environment (its database)."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "chatbot", *args],
        cwd=ROOT,
        env={**os.environ, **stack.apps[0].env(), "INSTANCE_ID": "e2e-cli"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def this_month() -> str:
    return datetime.now(ZoneInfo("Asia/Jakarta")).strftime("%Y-%m")


@pytest.fixture(scope="module")
def world(stack):
    """The posyandu, their workers (numbers known to the service) and the children."""
    flask_cli(stack, "add-posyandu", CODE_A, "Posyandu Kamboja")
    flask_cli(stack, "add-posyandu", CODE_B, "Posyandu Anggrek")
    ids = {}
    for name, (phone, code, answers) in CHILDREN.items():
        parent = HttpChat(stack.url, phone)
        screen(parent, name, TODDLER_TODAY, answers)
        assert "Posyandu" in parent.say(f"posyandu {code}")
        [child] = parent.get("/api/v1/children").json()["children"]
        ids[name] = child["id"]
    for phone, codes in (
        (WORKER_A, [CODE_A]),
        (WORKER_B, [CODE_B]),
        (WORKER_A_KEYS, [CODE_A]),
        (WORKER_BOTH, [CODE_A, CODE_B]),
    ):
        HttpChat(stack.url, phone)  # a user first exists by starting a chat
        options = [a for code in codes for a in ("--posyandu", code)]
        flask_cli(stack, "grant-role", phone, "health_worker", *options)
    return {"ids": ids}


def watch_console(page) -> list[str]:
    """Every console error and uncaught exception of the page, as they come."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def bearer_tokens(page) -> list[str]:
    """The Authorization headers the page sends the worker API (the newest last)."""
    tokens: list[str] = []

    def seen(request) -> None:
        if "/api/v1/worker/" in request.url and "authorization" in request.headers:
            tokens.append(request.headers["authorization"])

    page.on("request", seen)
    return tokens


def sign_in(stack, page, phone: str) -> None:
    """The page's own flow: the number, then the code the service sent (logged)."""
    page.goto(stack.url + "/worker/")
    page.fill("#phone", phone)
    page.click("#start-form button")
    page.wait_for_selector("#verify-form:not([hidden])")
    page.fill("#code", logged_code(stack, "+62" + phone[1:]))
    page.click("#verify-form button")
    page.wait_for_selector("body[data-loaded='1']")


def shown_names(page) -> list[str]:
    return page.locator("#children tbody button.open").all_inner_texts()


def download_csv(page, tmp_path, expected_name: str) -> list[list[str]]:
    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    assert download.suggested_filename == expected_name
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    data = path.read_bytes()
    assert data.startswith("\ufeff".encode())  # the BOM: spreadsheets read UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_worker_a_lists_opens_marks_and_exports_only_their_children(
    stack, browser, world, tmp_path
):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors = watch_console(page)
    tokens = bearer_tokens(page)
    sign_in(stack, page, WORKER_A)

    # This month's list: A's children, never B's; the counts on the status tabs.
    assert shown_names(page) == ["Ayu Lestari", "Bagus"]
    assert page.input_value("#month") == this_month()
    assert not page.is_visible("#posyandu")  # one posyandu: no select
    assert page.inner_text("[data-count='referred']") == "(1)"
    assert page.inner_text("[data-count='rescreen']") == "(1)"
    ayu = page.locator("#children tbody tr", has_text="Ayu Lestari")
    assert "Dirujuk" in ayu.inner_text()
    assert "Kemungkinan penyimpangan" in ayu.inner_text()
    # The domains of Ayu's five "no" answers, in Indonesian; her age.
    assert ayu.locator("td.domains").inner_text().strip() not in ("", "–", "tidak ada")
    assert ayu.locator("td").nth(1).inner_text().strip() == "22"
    assert ayu.locator("a.tel").get_attribute("href") == "tel:+6281800000821"
    assert ayu.locator("a.wa").get_attribute("href") == "https://wa.me/6281800000821"
    assert "belum pernah" in ayu.locator("td.contact").inner_text()

    page.screenshot(path=str(tmp_path / "worker-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 740})
    # At phone width nothing runs off the screen: the list's cards and the buttons fit.
    for selector in ("#children", "#download", "#tabs", "#search"):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, (selector, box)
    page.screenshot(path=str(tmp_path / "worker-phone.png"), full_page=True)
    (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
    for name in ("worker-desktop.png", "worker-phone.png"):
        shutil.copy(tmp_path / name, ROOT / "docs" / "img" / name)
    page.set_viewport_size({"width": 1280, "height": 800})

    # A status tab narrows the list; the search box (debounced) sends q=.
    page.click("#tabs button[data-status='rescreen']")
    expect(page.locator("#children tbody button.open")).to_have_text(["Bagus"])
    page.click("#tabs button[data-status='']")
    expect(page.locator("#children tbody button.open")).to_have_count(2)
    with page.expect_request(lambda r: "/api/v1/worker/due" in r.url and "q=ayu" in r.url):
        page.fill("#search", "ayu")
    expect(page.locator("#children tbody button.open")).to_have_text(["Ayu Lestari"])
    page.fill("#search", "Citra")  # B's child: not found by A
    expect(page.locator("#empty")).to_be_visible()
    page.fill("#search", "")
    expect(page.locator("#children tbody button.open")).to_have_count(2)

    # Ayu's history, then a contact with a note: in the dialog and on her row.
    ayu.locator("button.open").click()
    dialog = page.locator("#child")
    expect(dialog.locator("#screenings tbody tr")).to_have_count(1)
    assert "Kemungkinan penyimpangan" in dialog.locator("#screenings").inner_text()
    assert "5/10" in dialog.locator("#screenings").inner_text()
    assert "Belum ada kontak" in dialog.locator("#contacts").inner_text()
    page.fill("#note", "ditelepon, datang Selasa")
    page.click("#contacted")
    expect(page.locator("#contact-done")).to_have_text("Tersimpan.")
    assert "ditelepon, datang Selasa" in dialog.locator("#contacts").inner_text()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(ayu.locator("td.contact")).to_contain_text("Sudah dihubungi")
    expect(ayu.locator("td.contact")).to_contain_text("ditelepon, datang Selasa")
    # The API has it too (another worker of the same posyandu would see it).
    reloaded = http(
        "GET",
        f"{stack.url}/api/v1/worker/children/{world['ids']['Ayu Lestari']}",
        headers={"Authorization": tokens[-1]},
    )
    assert reloaded.json()["contacts"][0]["note"] == "ditelepon, datang Selasa"

    # The month's CSV: A's children only, the header the spec gives.
    rows = download_csv(page, tmp_path, f"kpsp-{CODE_A}-{this_month()}.csv")
    assert rows[0] == HEADER
    assert sorted(r[1] for r in rows[1:]) == ["Ayu Lestari", "Bagus"]
    assert {r[0] for r in rows[1:]} == {CODE_A}
    by_name = {r[1]: r for r in rows[1:]}
    assert by_name["Ayu Lestari"][3] == "22"
    assert by_name["Ayu Lestari"][5] == "kemungkinan penyimpangan"
    assert by_name["Bagus"][5] == "meragukan"
    # Another month (picked with the month input): no screenings, the header only.
    with page.expect_response(lambda r: "/worker/due" in r.url and "month=2020-01" in r.url):
        page.fill("#month", "2020-01")
    assert download_csv(page, tmp_path, f"kpsp-{CODE_A}-2020-01.csv") == [HEADER]
    page.fill("#month", this_month())

    # English, remembered on this device across a reload (the token stays for the tab).
    page.select_option("#lang", "en")
    expect(page.locator("#download")).to_have_text("Download CSV")
    expect(ayu.locator("td.contact")).to_contain_text("Contacted")
    page.reload()
    page.wait_for_selector("body[data-loaded='1']")
    expect(page.locator("#download")).to_have_text("Download CSV")
    expect(page.locator("#tabs button[data-status='referred']")).to_contain_text("Referred")
    expect(page.locator("#children tbody tr", has_text="Ayu Lestari")).to_contain_text(
        "Possible deviation"
    )
    assert page.get_attribute("html", "lang") == "en"
    assert errors == []
    context.close()


def test_worker_b_sees_only_their_children_and_the_apis_errors(stack, browser, world, tmp_path):
    from playwright.sync_api import expect

    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    tokens = bearer_tokens(page)
    sign_in(stack, page, WORKER_B)
    assert shown_names(page) == ["Citra", "Dimas"]
    citra = page.locator("#children tbody tr", has_text="Citra")
    assert citra.locator("a.wa").get_attribute("href") == "https://wa.me/6281800000823"
    citra.locator("button.open").click()
    expect(page.locator("#screenings tbody tr")).to_have_count(1)
    page.fill("#note", "sudah ke puskesmas")
    page.click("#visited")
    expect(page.locator("#contact-done")).to_have_text("Tersimpan.")
    page.click("#close")
    expect(citra.locator("td.contact")).to_contain_text("Rujukan dikunjungi")
    # Visited: the puskesmas follows Citra now; off the list when it is read again.
    page.click("#tabs button[data-status='referred']")
    expect(page.locator("#children tbody button.open")).to_have_count(0)
    page.click("#tabs button[data-status='']")
    expect(page.locator("#children tbody button.open")).to_have_text(["Dimas"])
    rows = download_csv(page, tmp_path, f"kpsp-{CODE_B}-{this_month()}.csv")
    assert rows[0] == HEADER
    assert sorted(r[1] for r in rows[1:]) == ["Citra", "Dimas"]
    assert {r[0] for r in rows[1:]} == {CODE_B}

    # An error from the API is said on the page, in its own words; the page stays.
    page.route(
        "**/api/v1/worker/due*",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            headers={"Content-Language": "id"},
            body='{"error": {"code": "database_unavailable", "message": "Basis data sedang '
            'tidak tersedia.", "request_id": "x"}}',
        ),
    )
    page.click("#tabs button[data-status='due']")
    expect(page.locator("#board-error")).to_contain_text("Basis data sedang tidak tersedia.")
    assert page.is_visible("#children")
    page.unroute("**/api/v1/worker/due*")
    # A child of A's posyandu is a 404 for B: its message, in the dialog.
    reply = http(
        "GET",
        f"{stack.url}/api/v1/worker/children/{world['ids']['Ayu Lestari']}",
        headers={"Authorization": tokens[-1]},
    )
    assert reply.status == 404
    context.close()


def test_a_parents_number_is_told_it_is_not_a_health_workers(stack, browser, world):
    page = browser.new_page()
    page.set_default_timeout(15_000)
    page.goto(stack.url + "/worker/")
    page.fill("#phone", NOT_A_WORKER)  # new to the service: a parent's token at once
    page.click("#start-form button")
    page.wait_for_selector("#signin-error:not(:empty)")
    assert "bukan nomor kader" in page.inner_text("#signin-error")
    assert page.is_visible("#start-form")
    assert not page.is_visible("#board")
    page.close()


def test_the_contact_button_is_reached_and_pressed_with_the_keyboard_only(stack, browser, world):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.set_default_timeout(15_000)
    page.goto(stack.url + "/worker/")
    expect(page.locator("#phone")).to_be_focused()
    page.keyboard.type(WORKER_A_KEYS)
    page.keyboard.press("Enter")
    expect(page.locator("#code")).to_be_focused()
    page.keyboard.type(logged_code(stack, "+62" + WORKER_A_KEYS[1:]))
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-loaded='1']")

    def tab_to(selector: str, most: int = 40) -> None:
        for _ in range(most):
            page.keyboard.press("Tab")
            if page.locator(selector + ":focus").count():
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#children tbody tr:first-child button.open")
    page.keyboard.press("Enter")
    expect(page.locator("#child")).to_be_visible()
    expect(page.locator("#screenings tbody tr")).to_have_count(1)
    tab_to("#contacted")
    page.keyboard.press("Enter")
    expect(page.locator("#contact-done")).to_have_text("Tersimpan.")
    page.keyboard.press("Escape")
    expect(page.locator("#child")).to_be_hidden()
    # Focus goes back to the row, and the row shows the contact.
    first = page.locator("#children tbody tr:first-child")
    expect(first.locator("button.open")).to_be_focused()
    expect(first.locator("td.contact")).to_contain_text("Sudah dihubungi")
    page.close()


def test_the_page_works_under_its_content_security_policy(stack, browser, world):
    """No 'unsafe-inline' in the page's CSP, and nothing refused or failing in the console,
    for a worker of two posyandu (who gets the posyandu select)."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.set_default_timeout(15_000)
    errors = watch_console(page)
    response = page.goto(stack.url + "/worker/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["cache-control"] == "no-cache"
    tokens = bearer_tokens(page)
    sign_in(stack, page, WORKER_BOTH)
    # The whole list in one page (Citra leaves it once worker B marks her referral
    # visited, so which names depend on the tests run before this one).
    everyone = shown_names(page)
    assert {"Ayu Lestari", "Bagus", "Dimas"} <= set(everyone) <= set(CHILDREN)
    whole = http("GET", f"{stack.url}/api/v1/worker/due", headers={"Authorization": tokens[-1]})
    assert [c["name"] for c in whole.json()["children"]] == everyone
    # Pages of one child, to walk "Load more" along the API's nextCursor.
    page.route(
        "**/api/v1/worker/due*",
        lambda route: route.continue_(url=route.request.url.replace("limit=50", "limit=1")),
    )
    page.reload()
    page.wait_for_selector("body[data-loaded='1']")
    assert shown_names(page) == everyone[:1]
    for shown in range(2, len(everyone) + 1):
        page.click("#more")
        expect(page.locator("#children tbody button.open")).to_have_count(shown)
    expect(page.locator("#more")).to_be_hidden()
    page.unroute("**/api/v1/worker/due*")
    assert shown_names(page) == everyone
    expect(page.locator("#posyandu")).to_be_visible()
    page.select_option("#posyandu", CODE_B)
    of_b = [name for name in everyone if CHILDREN[name][1] == CODE_B]
    expect(page.locator("#children tbody button.open")).to_have_text(of_b)
    page.locator("#children tbody button.open", has_text="Dimas").click()
    expect(page.locator("#screenings tbody tr")).to_have_count(1)
    page.keyboard.press("Escape")
    # The stylesheet applied (a refused one would leave hidden things shown).
    assert not page.is_visible("#signin")
    assert errors == []
    page.close()
