"""Request bodies: JSON only, bounded, and decoded strictly into the handler's declared type.

Litestar decodes a body into Python objects and then converts them leniently (`"2"` becomes the
integer 2), and its decoder recurses without a bound. `ApiRequest.json` replaces that step for
every route with a `data` parameter: it checks the media type (415), the size (413), UTF-8 and
nesting depth (400) on the raw bytes, then decodes once with msgspec in strict mode against the
handler's type, so what the schema says is exactly what is accepted.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException

from api.limits import MAX_BODY_BYTES, MAX_DEPTH
from api.problems import BODY_TOO_LARGE, MALFORMED_BODY, UNSUPPORTED_MEDIA_TYPE

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def is_json(content_type: str | None) -> bool:
    """application/json or any `+json` type (RFC 6839), whatever its parameters."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def nesting_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in `body` (brackets inside strings do not count)."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def decode_body(body: bytes, content_type: str | None, target: Any) -> Any:
    """`body` decoded as `target`, strictly; a problem for anything else."""
    if not is_json(content_type):
        raise UNSUPPORTED_MEDIA_TYPE(
            "send the body as JSON, with Content-Type: application/json",
            headers={"Accept": "application/json"},
        )
    if len(body) > MAX_BODY_BYTES:
        raise BODY_TOO_LARGE(f"a body may hold at most {MAX_BODY_BYTES} bytes")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise MALFORMED_BODY("the body is not valid UTF-8") from None
    if nesting_depth(body) > MAX_DEPTH:
        raise MALFORMED_BODY(f"the body nests arrays and objects deeper than {MAX_DEPTH}")
    try:
        return msgspec.json.decode(body, type=target, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise ValidationException(
            message, extra=[{"key": "data", "source": "body", "message": message}]
        ) from None
    except msgspec.DecodeError:
        raise MALFORMED_BODY("the body is not valid JSON") from None


class ApiRequest(Request[Any, Any, Any]):
    """Litestar's request, with `json()` decoding strictly into the handler's `data` type."""

    async def json(self) -> Any:
        data = self.route_handler.parsed_fn_signature.parameters.get("data")
        target = data.annotation if data is not None else Any
        decoded = decode_body(await self.body(), self.headers.get("content-type"), target)
        # Litestar converts what this returns into `data` again, leniently: builtins of a
        # value that already passed the strict decode convert back to the same value.
        return msgspec.to_builtins(decoded)
