"""Posyandu, their health workers and what each sees (chatbot/chat/staff.py).

A health worker sees only the children of their posyandu, through every staff route and
the export: another posyandu's child is a 404, like an unknown one. An admin sees all,
without parents' numbers. The list of staff routes is read from the app, so a new one
fails here until it is covered.
"""

from __future__ import annotations

import csv
import io

import pytest
from bson import ObjectId

from tests.support import TODDLER, ApiChat

pytestmark = pytest.mark.integration


def cli(app, *args):
    result = app.test_cli_runner().invoke(args=["chatbot", *args])
    return result


def staff(app, client, phone, role, *posyandu):
    """A signed-in staff user (a user first exists by starting a chat)."""
    chat = ApiChat(client, phone)
    options = [a for code in posyandu for a in ("--posyandu", code)]
    result = cli(app, "grant-role", phone, role, *options)
    assert result.exit_code == 0, result.output
    return chat


def parent(client, phone, child, code=None, answers=("ya",) * 10):
    """A parent with a screened child, linked to the posyandu `code` by the chat word."""
    chat = ApiChat(client, phone)
    chat.register_with_child(child, TODDLER)
    chat.say("ya")
    chat.answer_all(list(answers))
    if code is not None:
        assert "kode posyandu" in chat.say("posyandu").lower()
        assert "terhubung" in chat.say(code)
    return chat


@pytest.fixture
def world(app):
    """Two posyandu, a worker of each, a worker of both, an admin, three parents."""
    client = app.test_client()
    assert cli(app, "add-posyandu", "MAWAR01", "Posyandu Mawar").exit_code == 0
    assert cli(app, "add-posyandu", "melati02", "Posyandu Melati").exit_code == 0
    ana = parent(client, "081310000001", "Anaku", "mawar01")
    bob = parent(client, "081310000002", "Bobi", "MELATI02", ["tidak"] * 3 + ["ya"] * 7)
    cici = parent(client, "081310000003", "Cici")  # no posyandu
    a = staff(app, client, "081310000011", "health_worker", "MAWAR01")
    b = staff(app, client, "081310000012", "health_worker", "MELATI02")
    both = staff(app, client, "081310000013", "health_worker", "MAWAR01", "MELATI02")
    admin = staff(app, client, "081310000014", "admin")
    ids = {
        name: chat.get("/api/v1/children").get_json()["children"][0]["id"]
        for name, chat in (("ana", ana), ("bob", bob), ("cici", cici))
    }
    return {"a": a, "b": b, "both": both, "admin": admin, "ids": ids, "client": client,
            "bob": bob}  # fmt: skip


def names(response):
    assert response.status_code == 200, response.get_json()
    return sorted(c["name"] for c in response.get_json()["children"])


# (method, URL rule) of every staff route, and how the isolation test reaches it.
STAFF_ROUTES = {
    ("GET", "/api/v1/worker/posyandu"),
    ("GET", "/api/v1/worker/due"),
    ("GET", "/api/v1/worker/children"),
    ("GET", "/api/v1/worker/rescreens/overdue"),
    ("GET", "/api/v1/worker/stats"),
    ("GET", "/api/v1/worker/children/<child_id>"),
    ("POST", "/api/v1/worker/children/<child_id>/contacts"),
    ("GET", "/api/v1/worker/export.csv"),
}


def test_every_staff_route_is_covered_here(app):
    rules = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/worker/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert rules == STAFF_ROUTES


def test_a_health_worker_sees_only_their_posyandus_children_on_every_route(world):
    a, b, admin, ids = world["a"], world["b"], world["admin"], world["ids"]
    assert a.get("/api/v1/worker/posyandu").get_json()["posyandu"] == [
        {"code": "MAWAR01", "name": "Posyandu Mawar"}
    ]
    # Ana is next due from 26 April (24 months); Bob's doubtful result is a re-screen.
    assert names(a.get("/api/v1/worker/due?month=2031-04")) == ["Anaku"]
    assert names(b.get("/api/v1/worker/due")) == ["Bobi"]
    assert names(b.get("/api/v1/worker/children?risk=low,medium,high")) == ["Bobi"]
    assert names(a.get("/api/v1/worker/children?risk=low,medium,high")) == ["Anaku"]
    a_stats = a.get("/api/v1/worker/stats").get_json()
    assert sum(a_stats["childrenByRisk"].values()) == 1
    # Another posyandu's child: 404 exactly like an unknown id, reading or writing.
    unknown = str(ObjectId())
    for child in (ids["bob"], ids["cici"], unknown):
        read = a.get(f"/api/v1/worker/children/{child}")
        assert read.status_code == 404
        assert read.get_json()["error"]["code"] == "not_found"
        assert "Bobi" not in read.get_data(as_text=True)
        write = a.client.post(
            f"/api/v1/worker/children/{child}/contacts",
            headers=a.headers,
            json={"kind": "contacted", "note": "x"},
        )
        assert write.status_code == 404
    assert b.get(f"/api/v1/worker/children/{ids['bob']}").status_code == 200
    # The parents' routes a staff token may use answer the same: Bob's child and result.
    bob_result = world["bob"].get(f"/api/v1/children/{ids['bob']}").get_json()
    questionnaire = bob_result["recentScreenings"][0]["id"]
    assert a.get(f"/api/v1/children/{ids['bob']}").status_code == 404
    assert a.get(f"/api/v1/questionnaires/{questionnaire}").status_code == 404
    assert b.get(f"/api/v1/questionnaires/{questionnaire}").status_code == 200
    # Asking for the other posyandu by name is refused, not answered with its list.
    assert a.get("/api/v1/worker/due?posyandu=MELATI02").status_code == 403
    assert a.get("/api/v1/worker/export.csv?posyandu=MELATI02").status_code == 403
    # The export holds only the worker's own children.
    exported = a.get("/api/v1/worker/export.csv")
    assert "Bobi" not in exported.get_data(as_text=True)
    assert "Anaku" in exported.get_data(as_text=True)
    # The admin sees every posyandu, each on its own, and never a parent's number.
    assert {p["code"] for p in admin.get("/api/v1/worker/posyandu").get_json()["posyandu"]} == {
        "MAWAR01",
        "MELATI02",
    }
    melati = admin.get("/api/v1/worker/due?posyandu=MELATI02").get_json()["children"]
    assert [c["name"] for c in melati] == ["Bobi"]
    assert "parentPhone" not in melati[0]
    assert admin.get(f"/api/v1/worker/children/{ids['cici']}").status_code == 200
    everyone = admin.get("/api/v1/worker/children?risk=low,medium,high").get_json()["children"]
    assert sorted(c["name"] for c in everyone) == ["Anaku", "Bobi", "Cici"]
    assert all("parentPhone" not in c for c in everyone)


def test_phone_numbers_go_only_to_the_childs_own_posyandu(world):
    a, both = world["a"], world["both"]
    [row] = a.get("/api/v1/worker/due?month=2031-04").get_json()["children"]
    assert row["parentPhone"] == "+6281310000001"
    rows = both.get("/api/v1/worker/due?month=2031-04").get_json()["children"]
    assert {r["name"]: r["parentPhone"] for r in rows} == {
        "Anaku": "+6281310000001",
        "Bobi": "+6281310000002",
    }
    detail = a.get(f"/api/v1/worker/children/{world['ids']['ana']}").get_json()
    assert detail["child"]["parentPhone"] == "+6281310000001"


def test_the_cached_staff_lists_are_kept_apart_per_posyandu(world):
    """The staff response cache keys by the worker's posyandu: B asking the same URL right
    after A never gets A's cached answer."""
    a, b = world["a"], world["b"]
    for _ in range(2):
        assert names(a.get("/api/v1/worker/due?month=2031-04")) == ["Anaku"]
        assert names(b.get("/api/v1/worker/due?month=2031-04")) == ["Bobi"]


def test_the_month_list_groups_children_and_records_contacts(world):
    both, ids = world["both"], world["ids"]
    body = both.get("/api/v1/worker/due").get_json()
    rows = {r["name"]: r for r in body["children"]}
    # Ana's appropriate result is next due at 24 months (2031-04): not this month's list.
    assert "Anaku" not in rows
    assert rows["Bobi"]["status"] == "rescreen"
    assert rows["Bobi"]["lastScreening"]["category"] == "doubtful"
    assert rows["Bobi"]["lastScreening"]["noDomains"]  # the domains of the 3 "no" answers
    assert rows["Bobi"]["ageMonths"] == 22
    assert body["counts"] == {"due": 0, "overdue": 0, "rescreen": 1, "referred": 0}
    may = both.get("/api/v1/worker/due?month=2031-04").get_json()
    assert [r["name"] for r in may["children"]] == ["Anaku", "Bobi"]
    assert {r["name"]: r["status"] for r in may["children"]}["Anaku"] == "due"
    assert names(both.get("/api/v1/worker/due?month=2031-04&q=ANA")) == ["Anaku"]
    # A contact, with its note: on the child's history and the list's row.
    posted = both.client.post(
        f"/api/v1/worker/children/{ids['bob']}/contacts",
        headers=both.headers,
        json={"kind": "contacted", "note": "ditelepon, datang Selasa"},
    )
    assert posted.status_code == 201
    history = both.get(f"/api/v1/worker/children/{ids['bob']}").get_json()
    assert [c["note"] for c in history["contacts"]] == ["ditelepon, datang Selasa"]
    assert [s["category"] for s in history["screenings"]] == ["doubtful"]
    assert history["screenings"][0]["ageMonths"] == 22
    [row] = both.get("/api/v1/worker/due?q=bobi").get_json()["children"]
    assert row["lastContact"]["kind"] == "contacted"
    # Bad input: one JSON error shape.
    for bad in ({"kind": "visited"}, {"kind": "contacted", "note": "x" * 501}, {}):
        response = both.client.post(
            f"/api/v1/worker/children/{ids['bob']}/contacts", headers=both.headers, json=bad
        )
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "validation_error"
    assert both.get("/api/v1/worker/due?month=2031-13").status_code == 400
    assert both.get("/api/v1/worker/due?cursor=nope").status_code == 400


def test_a_referral_stays_on_the_list_until_its_visit_is_recorded(app):
    client = app.test_client()
    assert cli(app, "add-posyandu", "KENANGA03", "Posyandu Kenanga").exit_code == 0
    dewi = parent(client, "081310000021", "Dewi", "KENANGA03", ["tidak"] * 10)
    worker = staff(app, client, "081310000022", "health_worker", "KENANGA03")
    child = dewi.get("/api/v1/children").get_json()["children"][0]["id"]
    [row] = worker.get("/api/v1/worker/due").get_json()["children"]
    assert row["status"] == "referred"
    response = worker.client.post(
        f"/api/v1/worker/children/{child}/contacts",
        headers=worker.headers,
        json={"kind": "referral_visited", "note": "diperiksa di puskesmas"},
    )
    assert response.status_code == 201
    body = worker.get("/api/v1/worker/due").get_json()
    assert body["counts"]["referred"] == 0


def test_the_export_is_a_streamed_csv_a_spreadsheet_reads(world):
    both = world["both"]
    response = both.get("/api/v1/worker/export.csv?month=2031-03")
    assert response.status_code == 200
    assert response.is_streamed  # generated as the cursor reads, not built in memory
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    data = response.get_data()
    assert data.startswith("\ufeff".encode())  # UTF-8 for spreadsheets
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["posyandu", "child", "sex", "age_months", "date", "result", "action"]
    body = {r[1]: r for r in rows[1:]}
    assert set(body) == {"Anaku", "Bobi"}
    assert body["Anaku"][0] == "MAWAR01"
    assert body["Anaku"][3] == "22"
    assert body["Anaku"][4] == "2031-03-10"
    assert body["Bobi"][5] == "meragukan"
    english = both.get("/api/v1/worker/export.csv?month=2031-03&language=en").get_data()
    assert "doubtful" in english.decode("utf-8-sig")
    # Another month has no screenings: the header only.
    empty = both.get("/api/v1/worker/export.csv?month=2031-02").get_data().decode("utf-8-sig")
    assert empty.strip() == "posyandu,child,sex,age_months,date,result,action"


def test_children_added_after_linking_join_the_posyandu_and_a_wrong_code_is_said(app):
    client = app.test_client()
    assert cli(app, "add-posyandu", "DAHLIA05", "Posyandu Dahlia").exit_code == 0
    chat = ApiChat(client, "081310000041")
    chat.register_with_child("Eka", TODDLER)
    chat.say("tidak")  # not now: the menu
    assert "tidak dikenal" in chat.say("posyandu XYZ99")
    assert chat.last["step"] == "posyandu"
    assert "Posyandu Dahlia" in chat.say("dahlia05")
    assert chat.last["step"] == "menu"
    for text in ("2", "Fajar", TODDLER, "1", "38"):
        chat.say(text)
    worker = staff(app, client, "081310000042", "health_worker", "DAHLIA05")
    assert names(worker.get("/api/v1/worker/due?month=2031-03")) == ["Eka", "Fajar"]


def test_roles_and_posyandu_through_the_admin_api(world, app):
    admin, client = world["admin"], world["client"]

    def put(phone, body):
        body = {"phoneNumber": phone, **body}
        return client.put("/api/v1/admin/roles", headers=admin.headers, json=body)

    created = client.post(
        "/api/v1/admin/posyandu", headers=admin.headers, json={"code": "Tulip06", "name": "Tulip"}
    )
    assert created.status_code == 201
    assert created.get_json()["posyandu"] == {"code": "TULIP06", "name": "Tulip"}
    again = client.post(
        "/api/v1/admin/posyandu", headers=admin.headers, json={"code": "TULIP06", "name": "T"}
    )
    assert again.status_code == 409
    assert put("081310000011", {"role": "health_worker", "posyandu": ["MELATI02"]}).get_json() == {
        "phoneNumber": "+6281310000011",
        "role": "health_worker",
        "posyandu": ["MELATI02"],
    }
    # At once: worker A now serves Melati, not Mawar (the cached user follows).
    assert names(world["a"].get("/api/v1/worker/due")) == ["Bobi"]
    assert put("081310000011", {"role": "health_worker", "posyandu": ["NOPE"]}).status_code == 404
    assert put("081399999999", {"role": "health_worker"}).status_code == 404
    assert put("081310000011", {"role": "admin", "posyandu": ["MAWAR01"]}).status_code == 400
    assert put("not-a-number", {"role": "admin"}).status_code == 400
    # Only an admin.
    denied = client.put(
        "/api/v1/admin/roles",
        headers=world["a"].headers,
        json={"phoneNumber": "081310000011", "role": "admin"},
    )
    assert denied.status_code == 403
    result = cli(app, "grant-role", "081310000012", "health_worker", "--posyandu", "NOPE")
    assert result.exit_code != 0
    assert "NOPE" in result.output
