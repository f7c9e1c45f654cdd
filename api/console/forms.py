"""The bodies of the console's forms (`application/x-www-form-urlencoded`), each field bounded;
the CSRF field is read by the middleware and ignored here."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec

from aggregates.conversation import MAX_TEXT, Medium
from continuity.erasure_requests import MAX_REASON, MAX_REFERENCE
from continuity.legal_holds import MAX_REASON as MAX_HOLD_REASON

Short = Annotated[str, msgspec.Meta(max_length=200)]


class SignIn(msgspec.Struct, kw_only=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]


class Purposeful(msgspec.Struct, kw_only=True):
    """Every agent form names the purpose of the page it came from, to go back to it."""

    purpose: Short
    idempotency_key: UUID | None = None
    """A fresh key on each rendered form: a form sent twice (a double click, a resubmitted
    page) is recorded once."""


class Reply(Purposeful, kw_only=True):
    text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
    medium: Medium
    """The conversation's own: a chat is answered in the chat, an email by email."""


class Transfer(Purposeful, kw_only=True):
    to_agent: UUID


class Find(msgspec.Struct, kw_only=True):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=320)]
    """A subject id, an email address, or a phone number."""


class Hold(msgspec.Struct, kw_only=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_HOLD_REASON)]


class Erasure(msgspec.Struct, kw_only=True):
    """Why, and the officer's reference (a ticket): both optional, both sealed at rest."""

    reason: Annotated[str, msgspec.Meta(max_length=MAX_REASON)] = ""
    reference: Annotated[str, msgspec.Meta(max_length=MAX_REFERENCE)] = ""
