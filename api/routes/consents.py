"""Consent routes: the customer's consents (`/v1/me/consents`), and a subject's full consent
history for compliance officers (`/v1/privacy/subjects/{subject_id}/consents`).

A customer's answer carries the ledger's version as its ETag; a change with `If-Match` at
another version is 412. The history is read from the consent proofs, so it still answers after
the subject's erasure.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from aggregates.consent import PURPOSES
from aggregates.errors import NotFound
from api.auth import Principal, compliance_only, customer_only
from api.consent_schemas import ConsentBody, ConsentHistory, ConsentProof, Consents, ConsentsBody
from api.consent_schemas import ConsentState as ConsentAnswer
from api.customer_requests import (
    ChannelHeader,
    IdempotencyKey,
    IfMatch,
    IfNoneMatch,
    Me,
    customer_meta,
    idempotency_key_of,
)
from api.etags import check_not_modified, if_match_version, version_etag
from continuity import consents
from continuity.runtime import Runtime

PurposeName = Annotated[
    str, Parameter(description=f"One of {', '.join(PURPOSES)} (404 for any other).")
]
Caller = Request[Principal, Any, Any]
SubjectId = Annotated[UUID, Parameter(description="The subject's pseudonymous id.")]


def _purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise NotFound(f"there is no purpose {purpose[:40]!r}", field="purpose")
    return purpose


class MyConsentsController(Controller):
    path = "/v1/me/consents"
    guards = [customer_only]
    tags = ["consent"]

    @get("/", summary="The customer's consent to every purpose, and how each was last set")
    async def all(
        self, request: Me, runtime: NamedDependency[Runtime], if_none_match: IfNoneMatch = None
    ) -> Response[Consents]:
        ledger = await runtime.consents.current(request.user.subject_id)
        etag = version_etag(ledger.version)
        check_not_modified(if_none_match, etag)
        return Response(Consents.of(ledger), headers={"ETag": etag})

    @put("/", summary="Give or withdraw consent to several purposes at once")
    async def set_all(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        data: JSONBody[ConsentsBody],
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[Consents]:
        """One event per purpose, in one append: all recorded, or none (an unknown purpose or
        essential withdrawn is 422 naming `consents.<purpose>`)."""
        changed = await runtime.consents.record(
            request.user.subject_id,
            customer_meta(request.user, channel),
            consents.several(data.consents, data.policy_version, data.source),
            idempotency_key=idempotency_key_of(idempotency_key),
            if_match=if_match_version(if_match),
        )
        ledger = changed.ledger
        return Response(Consents.of(ledger), headers={"ETag": version_etag(ledger.version)})

    @get("/{purpose:str}", summary="The customer's consent to one purpose")
    async def one(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        purpose: PurposeName,
        if_none_match: IfNoneMatch = None,
    ) -> Response[ConsentAnswer]:
        _purpose(purpose)
        ledger = await runtime.consents.current(request.user.subject_id)
        etag = version_etag(ledger.version)
        check_not_modified(if_none_match, etag)
        return Response(ConsentAnswer.of(ledger, purpose), headers={"ETag": etag})

    @put("/{purpose:str}", summary="Give or withdraw consent to one purpose (recorded, provable)")
    async def set_one(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        purpose: PurposeName,
        data: JSONBody[ConsentBody],
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ConsentAnswer]:
        """Each choice is an event in the customer's log and a proof that outlives their
        erasure. `essential` cannot be withdrawn (422 naming `given`)."""
        changed = await runtime.consents.record(
            request.user.subject_id,
            customer_meta(request.user, channel),
            consents.one(_purpose(purpose), data.given, data.policy_version, data.source),
            idempotency_key=idempotency_key_of(idempotency_key),
            if_match=if_match_version(if_match),
        )
        ledger = changed.ledger
        return Response(
            ConsentAnswer.of(ledger, purpose), headers={"ETag": version_etag(ledger.version)}
        )


class PrivacyConsentsController(Controller):
    path = "/v1/privacy/subjects"
    guards = [compliance_only]
    tags = ["privacy"]

    @get(
        "/{subject_id:uuid}/consents",
        summary="A subject's full consent history, from the proofs (after erasure too)",
    )
    async def history(
        self, request: Caller, runtime: NamedDependency[Runtime], subject_id: SubjectId
    ) -> ConsentHistory:
        proofs = await runtime.consents.history(subject_id)
        return ConsentHistory(subject_id, [ConsentProof.of(p) for p in proofs])
