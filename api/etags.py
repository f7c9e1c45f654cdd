"""ETags: what If-Match and If-None-Match may hold, parsed strictly (RFC 9110 section 13).

A cart's ETag is its version as a strong tag, `"3"`: ASCII digits, no leading zero, at most
`MAX_VERSION_DIGITS`. Writes compare strongly, so a weak tag (`W/"3"`) never matches; reads
answer 304 when If-None-Match names the current tag (weak comparison, as the RFC says).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec
from litestar import Response
from litestar.exceptions import ValidationException

from api.limits import MAX_VERSION_DIGITS
from api.problems import WEAK_ETAG

_VERSION = re.compile(rf'"(0|[1-9][0-9]{{0,{MAX_VERSION_DIGITS - 1}}})"')
_LISTED_TAG = re.compile(r'[ \t]*((?:W/)?"[\x21\x23-\x7e]*")[ \t]*(?:,|\Z)')
"""One entity-tag of a list (RFC 9110): an optional W/, then printable ASCII but `"` between
quotes, then a comma or the end."""


class NotModified(Exception):
    """Answered as 304 with the current ETag: the client's copy is still the current one."""

    def __init__(self, etag: str) -> None:
        super().__init__(etag)
        self.etag = etag


def _invalid(header: str, message: str) -> ValidationException:
    return ValidationException(
        f"{header} {message}",
        extra=[{"key": header, "source": "header", "message": message}],
    )


def version_etag(version: int) -> str:
    return f'"{version}"'


def content_etag(body: msgspec.Struct | list[Any]) -> str:
    """A strong ETag for a representation with no single version (the session): a digest of
    its JSON, the same bytes the client receives."""
    digest = hashlib.blake2b(msgspec.json.encode(body), digest_size=12).hexdigest()
    return f'"{digest}"'


def if_match_version(value: str | None) -> int | None:
    """The cart version a write was based on, or None (no If-Match, or `*`).

    Anything but one strong version tag is refused: a weak one as 412 (it cannot match), any
    other text as 400, before it is turned into a number."""
    if value is None:
        return None
    text = value.strip(" \t")
    if text == "*":
        return None
    if text.startswith("W/"):
        raise WEAK_ETAG(
            f"If-Match {text[:40]} is a weak ETag, and writes compare ETags strongly: send the"
            ' ETag as it was given, e.g. "3"',
            field="If-Match",
        )
    found = _VERSION.fullmatch(text)
    if found is None:
        raise _invalid("If-Match", 'must be one cart version ETag such as "3"')
    return int(found.group(1))


def check_not_modified(if_none_match: str | None, etag: str) -> None:
    """Raise NotModified when If-None-Match is `*` or lists `etag` (weakly compared)."""
    if if_none_match is None:
        return
    text = if_none_match.strip(" \t")
    if text == "*":
        raise NotModified(etag)
    tags = []
    position = 0
    while position < len(text):
        found = _LISTED_TAG.match(text, position)
        if found is None:
            raise _invalid("If-None-Match", 'must be * or ETags such as "3", separated by commas')
        tags.append(found.group(1).removeprefix("W/"))
        position = found.end()
    if etag in tags:
        raise NotModified(etag)


def not_modified(etag: str) -> Response[None]:
    return Response(None, status_code=304, headers={"ETag": etag})
