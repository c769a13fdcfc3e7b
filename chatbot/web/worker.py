"""The health workers' page: this month's children of their posyandu, a child's history,
contacts and the monthly CSV, all from the worker API.

Like the operator dashboard, the page holds no data (a browser cannot send a bearer token
when it opens a page): it asks for a health worker's sign-in, then reads /api/v1/worker/*,
which answers only to a health worker's or an admin's token.
"""

from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from chatbot import limits

bp = Blueprint("worker_page", __name__, static_folder="worker", static_url_path="/worker/static")
limits.exempt(bp)  # the page and its files; the worker API it calls is limited


@bp.get("/worker/")
def page() -> ResponseReturnValue:
    response = bp.send_static_file("index.html")
    # The page is tiny and changes with releases: always revalidate.
    response.headers["Cache-Control"] = "no-cache"
    return response
