"""Trust X-Forwarded-* only on requests from nginx, told apart by a shared secret.

nginx sets X-Proxy-Secret to PROXY_SECRET on every request it passes (replacing any a
client sent). A request carrying it gets werkzeug's ProxyFix: the client address is
nginx's last X-Forwarded-For hop, the scheme and host its X-Forwarded-Proto/-Host. Any
other request (a process on the host talking to an instance's port, the health
checker, a test client) keeps its real peer address, whatever X-Forwarded-For it sends,
and so its own per-address rate limits. The peer's address proves nothing here: every
process on nginx's host shares it. Why a secret rather than a unix socket:
docs/deployment.md, "Who may set X-Forwarded-For".
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.middleware.proxy_fix import ProxyFix

from chatbot.settings import PROXY_SECRET_HEADER

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

# Set in the WSGI environ of a request that came through nginx (the secret matched).
VIA_PROXY = "chatbot.via_proxy"


class TrustedProxy:
    """WSGI middleware: ProxyFix for requests carrying the proxy secret, nothing otherwise."""

    def __init__(self, app: WSGIApplication, secret: str) -> None:
        self.app = app
        self.proxied = ProxyFix(app, x_for=1, x_proto=1, x_host=1)
        self.secret = secret.encode()
        self.key = "HTTP_" + PROXY_SECRET_HEADER.upper().replace("-", "_")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # Removed either way: no view, log or error report ever sees the secret.
        presented = environ.pop(self.key, "").encode("latin-1")
        if self.secret and hmac.compare_digest(presented, self.secret):
            environ[VIA_PROXY] = True
            return self.proxied(environ, start_response)
        return self.app(environ, start_response)


def trust_proxy(app: WSGIApplication, secret: str, production: bool) -> WSGIApplication:
    """Wrap the app's WSGI callable; without a secret no request's X-Forwarded-* is trusted."""
    if not secret and production:
        log.warning(
            "PROXY_SECRET is not set: X-Forwarded-For is trusted from nobody, so every "
            "client behind nginx counts as nginx's address for per-address rate limits "
            "(docs/deployment.md)",
            extra={"event": "proxy_secret_missing"},
        )
    return TrustedProxy(app, secret)
