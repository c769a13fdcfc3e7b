"""The operator dashboard: a static page whose every figure comes from the admin API.

The page itself holds no data (the browser cannot send a bearer token when it opens a
page): it asks for an admin's sign-in, then reads /api/v1/admin/*, which answer only to
an admin token. The charting library (uPlot) is installed from npm at set-up
(devtools/setup.sh) into dashboard/vendor/ and served from here: no CDN.
"""

from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from chatbot import limits

bp = Blueprint("dashboard", __name__, static_folder="dashboard", static_url_path="/admin/static")
limits.exempt(bp)  # the page; the admin API it calls is limited


@bp.get("/admin/")
def page() -> ResponseReturnValue:
    response = bp.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response
