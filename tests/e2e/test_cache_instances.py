"""A write through one instance is seen at once through the other (both cache tiers)."""

from __future__ import annotations

import pytest

from tests.support import TODDLER_TODAY, HttpChat

pytestmark = pytest.mark.e2e


def test_writes_through_one_instance_invalidate_the_others_caches(stack):
    one = HttpChat(f"http://127.0.0.1:{stack.apps[0].port}", "081300000801")
    two = HttpChat(f"http://127.0.0.1:{stack.apps[1].port}", one.phone, one.token)
    for text in ("halo", "ya", "1", "Budi", TODDLER_TODAY, "1", "38"):
        one.say(text)
    for _ in range(2):  # the second read is a hit in instance two's memory tier
        listed = two.get("/api/v1/children").json()["children"]
        assert [c["name"] for c in listed] == ["Budi"]
    assert two.get("/api/v1/children").headers.get("X-Instance-Id") == "app2"
    for text in ("tidak", "2", "Sari", TODDLER_TODAY, "2", "38"):
        one.say(text)
    listed = two.get("/api/v1/children").json()["children"]
    assert [c["name"] for c in listed] == ["Budi", "Sari"]
    # And the other way round: archived through two, gone through one.
    reply = two.http(
        "POST", two.base + f"/api/v1/children/{listed[0]['id']}/archive", headers=two.headers
    )
    assert reply.status == 200
    assert [c["name"] for c in one.get("/api/v1/children").json()["children"]] == ["Sari"]
    history = two.get("/api/v1/chat/messages?limit=1").json()["messages"]
    assert history[0]["text"] == one.last["replies"][-1]["text"]
