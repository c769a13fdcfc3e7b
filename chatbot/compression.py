"""Compression as the design sets it: Flask-Compress, gzip level 6, bodies of 1 KiB or more.

- `X-No-Compression` on a request turns it off for that response (the design's opt-out);
  responses then say `Vary: Accept-Encoding, X-No-Compression`.
- Compressed bodies of responses that carry an ETag are kept in the worker's memory
  tier under (algorithm, ETag), so a cached response is compressed once per worker, not
  on every request. Flask-Compress appends the algorithm to a strong ETag
  (`"abc"` -> `"abc:gzip"`) and answers If-None-Match on the compressed form too, so an
  ETag stays valid for the encoding it was given with.
- nginx never compresses (`gzip off` in nginx/nginx.conf.template): one owner per body.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, request
from flask_compress import Compress

from chatbot.cache import MemoryCache
from chatbot.settings import Settings

NO_COMPRESSION = "X-No-Compression"


class _EtagKeyedBodies:
    """Flask-Compress's cache backend: compressed bodies by ETag, in the memory tier."""

    def __init__(self, memory: MemoryCache) -> None:
        self.memory = memory

    def get(self, key: str) -> Any:
        return None if key.endswith(";") else self.memory.get("compressed:" + key)

    def set(self, key: str, value: Any) -> None:
        if not key.endswith(";"):  # no ETag: nothing names this body, do not keep it
            self.memory.set("compressed:" + key, value)


def _etag_of_request() -> str:
    # Flask-Compress asks before it sees the response; the response cache left the ETag.
    return g.get("response_etag") or ""


def init_app(app: Flask, compress: Compress, settings: Settings, memory: MemoryCache) -> None:
    app.config.update(
        COMPRESS_ALGORITHM=["gzip"],
        COMPRESS_LEVEL=settings.compress_level,
        COMPRESS_MIN_SIZE=settings.compress_min_size,
        # Python names .js files text/javascript (older systems application/javascript).
        COMPRESS_MIMETYPES=[
            "application/json",
            "text/html",
            "text/css",
            "text/javascript",
            "application/javascript",
        ],
        # Registered below, behind the X-No-Compression check.
        COMPRESS_REGISTER=False,
        COMPRESS_CACHE_KEY=lambda _request: _etag_of_request(),
        COMPRESS_CACHE_BACKEND=lambda: _EtagKeyedBodies(memory),
    )
    compress.init_app(app)

    @app.after_request
    def _compress(response: Response) -> Response:
        response.vary.add(NO_COMPRESSION)
        if request.headers.get(NO_COMPRESSION):
            response.vary.add("Accept-Encoding")
            return response
        return compress.after_request(response)
