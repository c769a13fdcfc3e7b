"""Security headers on every response of the app (issue 11, item 5).

- `X-Content-Type-Options: nosniff`: a browser never guesses a type, so a JSON answer
  that echoes user text is never run as a script or rendered as a page.
- `Referrer-Policy: no-referrer`: no URL of ours leaks to another site.
- `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: nothing may frame the app
  (clickjacking); the old header for old browsers, the CSP for the others.
- `Content-Security-Policy`: an HTML page (the web chat, the dashboard) may load scripts,
  styles, images and API calls from this origin only, with no inline script or style
  (their HTML has none: every script and stylesheet is a file under /static or
  /admin/static; setting `element.style` from those scripts stays allowed). Every other
  answer (the API's JSON, the files themselves, errors) may load nothing at all.

Set in an after_request hook, which runs for error answers as well (the error envelope,
429s from the limiter, 404s of unknown routes); it overrides whatever a view set.
"""

from __future__ import annotations

from flask import Flask, Response

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _secure(response: Response) -> Response:
    response.headers.update(HEADERS)
    page = response.mimetype == "text/html"
    response.headers["Content-Security-Policy"] = PAGE_CSP if page else API_CSP
    return response


def init_app(app: Flask) -> None:
    app.after_request(_secure)
