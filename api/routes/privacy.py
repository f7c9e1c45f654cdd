"""Privacy routes for compliance officers (`/v1/privacy/...`): erasure requests with their status
and signed certificates, legal holds, the suppression list; and a customer's own erasure request
(`POST /v1/me/erasure`).

An erasure request is executed while the request that creates it waits (tens of milliseconds):
the answer gives its final state, completed unless a legal hold blocks it or it failed.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, Parameter, QueryParameter

from aggregates.errors import InvalidValue, NotFound
from api.auth import Principal, compliance_only, customer_only
from api.customer_requests import Me
from api.etags import content_etag
from api.privacy_schemas import (
    ErasurePage,
    ErasureView,
    HoldBody,
    HoldLifted,
    HoldView,
    Identifier,
    MyErasure,
    NewErasure,
)
from continuity.erasure_requests import MAX_PAGE, Requester, State, Target
from continuity.identifiers import Kind
from continuity.legal_holds import subject_known
from continuity.runtime import Runtime
from privacy.certificates import SignedCertificate

Officer = Request[Principal, Any, Any]
RequestId = Annotated[UUID, Parameter(description="The erasure request's id.")]
SubjectId = Annotated[UUID, Parameter(description="The data subject's (customer's) id.")]


class PrivacyController(Controller):
    path = "/v1/privacy"
    guards = [compliance_only]
    tags = ["privacy"]

    @post(
        "/erasures",
        status_code=201,
        summary="Request a subject's erasure (by id, email or phone); executed at once",
        responses={
            200: ResponseSpec(
                ErasureView, description="The subject's request that stands or completed already."
            )
        },
    )
    async def request_erasure(
        self, request: Officer, runtime: NamedDependency[Runtime], data: JSONBody[NewErasure]
    ) -> Response[ErasureView]:
        """Idempotent per subject: while a request for the subject stands (received, executing,
        blocked) or once one completed, asking again answers that one (200). A new request (201)
        is executed before the answer: completed, blocked by a legal hold (`hold_reason`), or
        failed (`failure`)."""
        target = Target(data.subject_id, data.email, data.phone)
        requester = Requester("compliance", request.user.subject_id)
        found, created = await runtime.erasures.create(
            target, requester, data.reason, data.reference
        )
        return Response(ErasureView.of(found), status_code=201 if created else 200)

    @get("/erasures", summary="Erasure requests, newest first")
    async def erasures(
        self,
        runtime: NamedDependency[Runtime],
        only: Annotated[
            State | None, QueryParameter(name="state", description="Only this state.")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 20,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="The last page's next_cursor.")
        ] = None,
    ) -> ErasurePage:
        return ErasurePage.of(await runtime.erasures.page(only, limit=limit, cursor=cursor))

    @get("/erasures/{request_id:uuid}", summary="An erasure request's status")
    async def erasure(
        self, runtime: NamedDependency[Runtime], request_id: RequestId
    ) -> ErasureView:
        return ErasureView.of(await runtime.erasures.get(request_id))

    @get(
        "/erasures/{request_id:uuid}/certificate",
        summary="The signed erasure certificate of a completed request",
    )
    async def certificate(
        self, runtime: NamedDependency[Runtime], request_id: RequestId
    ) -> SignedCertificate:
        """JSON with no personal data, signed with the service's Ed25519 key: verify it offline
        with `continuity certificate verify FILE --public-key KEY`, the key from
        `/.well-known/continuity-signing-key`. 409 until the request completed."""
        return await runtime.erasures.certificate(request_id)

    @get("/subjects/{subject_id:uuid}/hold", summary="The legal hold on a subject, if one stands")
    async def hold(self, runtime: NamedDependency[Runtime], subject_id: SubjectId) -> HoldView:
        hold = await runtime.holds.standing(subject_id)
        if hold is None:
            raise NotFound("no legal hold stands on this subject", "subject_id")
        return HoldView.of(hold)

    @put(
        "/subjects/{subject_id:uuid}/hold",
        summary="Place a legal hold on a subject: their erasure waits until it is lifted",
    )
    async def place_hold(
        self,
        request: Officer,
        runtime: NamedDependency[Runtime],
        subject_id: SubjectId,
        data: JSONBody[HoldBody],
    ) -> HoldView:
        """Replaces a hold that stands (the old one is kept, as lifted). 410 for a subject
        erased already; 409 while their erasure is executing."""
        if not await subject_known(runtime.pool, subject_id):
            raise NotFound("no customer with this subject_id", "subject_id")
        placed = await runtime.holds.place(subject_id, request.user.subject_id, data.reason)
        return HoldView.of(placed)

    @delete(
        "/subjects/{subject_id:uuid}/hold",
        status_code=200,
        summary="Lift a subject's legal hold: the erasures it blocked proceed",
    )
    async def lift_hold(
        self, request: Officer, runtime: NamedDependency[Runtime], subject_id: SubjectId
    ) -> HoldLifted:
        """The erasure requests the hold blocked are executed before the answer, which lists
        them in their state after (completed, unless another hold still stands)."""
        lifted = await runtime.holds.lift(subject_id, request.user.subject_id)
        if lifted is None or lifted.lifted_by is None or lifted.lifted_at is None:
            raise NotFound("no legal hold stands on this subject", "subject_id")
        resumed = await runtime.erasures.resume(subject_id)
        return HoldLifted(
            subject_id, lifted.lifted_by, lifted.lifted_at, [ErasureView.of(r) for r in resumed]
        )

    @delete(
        "/suppressions",
        status_code=204,
        summary="Lift the suppression of an erased customer's email address or phone number",
    )
    async def lift_suppression(
        self, runtime: NamedDependency[Runtime], data: JSONBody[Identifier]
    ) -> None:
        """The identifier may be registered again, and a message from it starts a new guest.
        404 if it was not suppressed."""
        if (data.email is None) == (data.phone is None):
            raise InvalidValue("give exactly one of email or phone", "email")
        kind: Kind = "email" if data.email is not None else "phone"
        value = data.email if data.email is not None else data.phone
        assert value is not None
        try:
            lifted = await runtime.identifiers.lift(kind, value)
        except InvalidValue as exc:
            raise InvalidValue(str(exc), kind) from None
        if not lifted:
            raise NotFound(f"this {kind} is not suppressed", kind)


class MyErasureController(Controller):
    path = "/v1/me"
    guards = [customer_only]
    tags = ["privacy"]

    @post("/erasure", status_code=202, summary="Ask for the erasure of all my data")
    async def erase_me(self, request: Me, runtime: NamedDependency[Runtime]) -> Response[MyErasure]:
        """Executed at once, like an officer's request, which compliance officers see in their
        list. Asking again answers the same request. Once completed, this device's token (every
        device's) stops working: the customer's devices are removed with their data."""
        me = request.user
        requester = Requester("customer", me.subject_id, me.device_id, me.device)
        found, _ = await runtime.erasures.create(
            Target(subject_id=me.subject_id), requester, must_exist=False
        )
        body = MyErasure.of(found)
        return Response(body, status_code=202, headers={"ETag": content_etag(body)})
