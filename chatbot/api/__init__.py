"""The HTTP API under /api/v1: thin views that validate, call a service, respond."""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from chatbot.errors import InvalidInputError, UnsupportedMediaTypeError

PREFIX = "/api/v1"
M = TypeVar("M", bound=BaseModel)


# The deepest nesting of arrays and objects a body may have. Every body this API takes
# is an object of strings or lists of strings (depth 2). Python's json parser recurses
# once per level, so a few KB of "[[[[..." would otherwise raise RecursionError (a 500).
MAX_JSON_DEPTH = 32
# Integers must fit MongoDB's 64-bit ints; longer digit strings are not even converted
# (Python refuses above 4300 digits, and converting long ones costs quadratic time).
_INT64_DIGITS = 19
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Every byte but quotes and brackets, dropped before the nesting is counted.
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_OPENERS = frozenset(b"[{")


class _RefusedError(ValueError):
    """Valid Python JSON, but not JSON this API accepts; the message says why."""


def _refuse_constant(name: str) -> Any:
    raise _RefusedError(f"{name} is not a JSON number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999999 parses as infinity
        raise _RefusedError("A number in the body is too large.")
    return value


def _int64(text: str) -> int:
    if len(text.lstrip("-")) > _INT64_DIGITS:
        raise _RefusedError("A number in the body is too large.")
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _RefusedError("A number in the body is too large.")
    return value


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether the JSON text `raw` nests arrays and objects deeper than `limit`.

    Counted on the bytes, before parsing, so a hostile body is refused without being
    built. Brackets inside strings do not count. A body with fewer brackets than the
    limit (nearly all) costs two byte counts; any other one pass over its brackets.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    # Drop escaped backslashes, then escaped quotes: each quote left opens or closes a string.
    skeleton = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    # Split at the quotes, the even pieces are outside strings.
    depth = 0
    for byte in b"".join(skeleton.split(b'"')[::2]):
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def load_json(raw: bytes) -> Any:
    """Parse a body as strict JSON (RFC 8259, UTF-8); anything else raises InvalidInputError.

    Refused: invalid UTF-8, nesting deeper than MAX_JSON_DEPTH, NaN and Infinity,
    numbers that overflow (1e999999, integers beyond 64 bits). Duplicate keys are
    accepted (the last one wins, as in most parsers).
    """
    try:
        text = raw.decode("utf-8-sig")  # RFC 8259 lets a parser ignore a byte order mark
    except UnicodeDecodeError:
        raise InvalidInputError("The body is not valid UTF-8.", code="invalid_json") from None
    too_deep = InvalidInputError(
        f"The body nests arrays or objects deeper than {MAX_JSON_DEPTH} levels.",
        code="invalid_json",
    )
    if nesting_exceeds(raw, MAX_JSON_DEPTH):
        raise too_deep
    try:
        return json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_int64
        )
    except _RefusedError as exc:
        raise InvalidInputError(str(exc), code="invalid_json") from None
    except RecursionError:  # not reachable past the count above; never let it become a 500
        raise too_deep from None
    except ValueError:  # json.JSONDecodeError
        raise InvalidInputError("The body is not valid JSON.", code="invalid_json") from None


def parse_body(model: type[M]) -> M:
    """The request's JSON body validated as `model`: 415 if not JSON, 400 if invalid."""
    if not request.is_json:
        raise UnsupportedMediaTypeError("Send a JSON body with Content-Type: application/json.")
    # get_data enforces MAX_CONTENT_LENGTH (413) before anything is parsed.
    return validate(model, load_json(request.get_data(cache=True)))


def parse_query(model: type[M]) -> M:
    return validate(model, request.args.to_dict())


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidInputError(
            "The request is not valid.", code="validation_error", details=details
        ) from None
