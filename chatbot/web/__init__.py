"""The web chat page: static HTML, CSS and JavaScript that talk to /api/v1."""

from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from chatbot import limits

bp = Blueprint("web", __name__, static_folder="static", static_url_path="/static")
limits.exempt(bp)  # the page and its files; the API it calls is limited
# The script and stylesheet: browsers and nginx's cache may keep them 5 minutes.
STATIC_MAX_AGE_S = 300


@bp.get("/")
def index() -> ResponseReturnValue:
    response = bp.send_static_file("index.html")
    # The page is tiny and changes with releases: always revalidate.
    response.headers["Cache-Control"] = "no-cache"
    return response
