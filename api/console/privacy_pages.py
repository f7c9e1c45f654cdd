"""The compliance officer's pages: find a subject, see their consents and who read their data,
place or lift a legal hold, request their erasure, follow it, and download and verify its
certificate.

A subject is found by id, email or phone through a POSTed form, so an identifier never appears
in a URL; the subject's page is addressed by its pseudonymous id alone.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.response import Redirect, Template

from aggregates.errors import NotFound
from api.auth import Principal, compliance_only
from api.consent_schemas import ConsentProof
from api.console.cookies import CONSOLE
from api.console.forms import Erasure, Find, Hold
from api.privacy_schemas import ErasureView, HoldView
from api.routes.access_audit import AuditItem
from continuity.audit import AuditFilter
from continuity.erasure_requests import Requester, Target
from continuity.identifiers import Kind
from continuity.legal_holds import subject_known
from continuity.runtime import Runtime
from privacy.certificates import CERTIFICATE_KEY, SignedCertificate, verify
from privacy.master_key import SignatureInvalid

Officer = Request[Principal, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)
Upload = Body(media_type=RequestEncodingType.MULTI_PART)
SubjectId = Annotated[UUID, Parameter(description="The data subject's id.")]
RequestId = Annotated[UUID, Parameter(description="The erasure request's id.")]
AUDIT_ENTRIES = 50
MAX_CERTIFICATE = 32 * 1024
PRIVACY = f"{CONSOLE}/privacy"


def subject_url(subject_id: UUID) -> str:
    return f"{PRIVACY}/subjects/{subject_id}"


def _kind(query: str) -> Kind:
    return "email" if "@" in query else "phone"


class PrivacyPages(Controller):
    path = PRIVACY
    guards = [compliance_only]
    include_in_schema = False

    @get("")
    async def home(self, runtime: NamedDependency[Runtime]) -> Template:
        recent = await runtime.erasures.page(limit=20)
        requests = [ErasureView.of(r) for r in recent.requests]
        return Template("privacy.html", context={"requests": requests, "page": "privacy"})

    @post("/find")
    async def find(
        self, runtime: NamedDependency[Runtime], data: Annotated[Find, Form]
    ) -> Response[Any]:
        query = data.query.strip()
        try:
            subject: UUID | None = UUID(query)
        except ValueError:
            subject = await runtime.identifiers.find(_kind(query), query)
        if subject is None or not await subject_known(runtime.pool, subject):
            raise NotFound("no subject has this id, email address or phone number", "query")
        return Redirect(subject_url(subject), status_code=303)

    @get("/subjects/{subject_id:uuid}")
    async def subject(self, runtime: NamedDependency[Runtime], subject_id: SubjectId) -> Template:
        consents = [ConsentProof.of(p) for p in await runtime.consents.history(subject_id)]
        audit = await runtime.audit.page(AuditFilter(subject_id=subject_id), limit=AUDIT_ENTRIES)
        hold = await runtime.holds.standing(subject_id)
        erasures = await runtime.erasures.page(subject_id=subject_id)
        context = {
            "subject_id": subject_id,
            "consents": consents,
            "audit": [AuditItem.of(e) for e in audit.entries],
            "hold": None if hold is None else HoldView.of(hold),
            "erasures": [ErasureView.of(r) for r in erasures.requests],
            "erased": bool(await runtime.vault.erased_among([subject_id])),
            "page": "privacy",
        }
        return Template("subject.html", context=context)

    @post("/subjects/{subject_id:uuid}/hold")
    async def place_hold(
        self,
        request: Officer,
        runtime: NamedDependency[Runtime],
        subject_id: SubjectId,
        data: Annotated[Hold, Form],
    ) -> Redirect:
        if not await subject_known(runtime.pool, subject_id):
            raise NotFound("no customer with this subject_id", "subject_id")
        await runtime.holds.place(subject_id, request.user.subject_id, data.reason)
        return Redirect(subject_url(subject_id), status_code=303)

    @post("/subjects/{subject_id:uuid}/hold/lift")
    async def lift_hold(
        self, request: Officer, runtime: NamedDependency[Runtime], subject_id: SubjectId
    ) -> Redirect:
        """Lifting runs the erasures the hold blocked, as the API's does."""
        lifted = await runtime.holds.lift(subject_id, request.user.subject_id)
        if lifted is None:
            raise NotFound("no legal hold stands on this subject", "subject_id")
        await runtime.erasures.resume(subject_id)
        return Redirect(subject_url(subject_id), status_code=303)

    @post("/subjects/{subject_id:uuid}/erasures")
    async def request_erasure(
        self,
        request: Officer,
        runtime: NamedDependency[Runtime],
        subject_id: SubjectId,
        data: Annotated[Erasure, Form],
    ) -> Redirect:
        """Executed before the answer, as the API's; asking again shows the standing one."""
        found, _ = await runtime.erasures.create(
            Target(subject_id=subject_id),
            Requester("compliance", request.user.subject_id),
            data.reason.strip() or None,
            data.reference.strip() or None,
        )
        return Redirect(f"{PRIVACY}/erasures/{found.request_id}", status_code=303)

    @get("/erasures/{request_id:uuid}")
    async def erasure(self, runtime: NamedDependency[Runtime], request_id: RequestId) -> Template:
        found = ErasureView.of(await runtime.erasures.get(request_id))
        checked = None
        if found.state == "completed":
            checked = await _checked(runtime, await runtime.erasures.certificate(request_id))
        context = {"erasure": found, "checked": checked, "page": "privacy"}
        return Template("erasure.html", context=context)

    @get("/erasures/{request_id:uuid}/certificate")
    async def certificate(
        self, runtime: NamedDependency[Runtime], request_id: RequestId
    ) -> Response[bytes]:
        """The signed certificate as a file (the same JSON as the API's)."""
        signed = await runtime.erasures.certificate(request_id)
        return Response(
            msgspec.json.encode(signed),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="erasure-{request_id}.json"'},
        )

    @get("/verify")
    async def verify_form(self) -> Template:
        return Template("verify.html", context={"checked": None, "page": "verify"})

    @post("/verify")
    async def verify_upload(
        self, runtime: NamedDependency[Runtime], data: Annotated[UploadFile, Upload]
    ) -> Template:
        """A certificate file checked against this service's signing key: whether it was
        signed by it and not changed since."""
        raw = await data.read(MAX_CERTIFICATE + 1)
        try:
            if len(raw) > MAX_CERTIFICATE:
                raise SignatureInvalid(f"the file is larger than {MAX_CERTIFICATE} bytes")
            signed = msgspec.json.decode(raw, type=SignedCertificate)
        except (msgspec.DecodeError, msgspec.ValidationError, SignatureInvalid) as exc:
            checked = {"valid": False, "why": _why(exc), "certificate": None}
        else:
            checked = await _checked(runtime, signed)
        status = 200 if checked["valid"] else 422
        context = {"checked": checked, "page": "verify"}
        return Template("verify.html", context=context, status_code=status)


def _why(exc: Exception) -> str:
    if isinstance(exc, SignatureInvalid):
        return str(exc)
    return "the file is not an erasure certificate (signed JSON)"


async def _checked(runtime: Runtime, signed: SignedCertificate) -> dict[str, Any]:
    """The outcome of verifying `signed` with this service's certificate key."""
    signer = await runtime.vault.signer(CERTIFICATE_KEY)
    try:
        verify(signed, signer.public_key_pem())
    except SignatureInvalid as exc:
        return {"valid": False, "why": str(exc), "certificate": signed.certificate}
    return {"valid": True, "key_id": signer.key_id, "certificate": signed.certificate}
