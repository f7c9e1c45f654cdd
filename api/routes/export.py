"""Data-subject exports (GDPR Art. 15 and 20): everything held about a subject, decrypted, as
one JSON document (`continuity.export.SubjectExport`), written as it is read.

A compliance officer exports any subject at `/v1/privacy/subjects/{id}/export`, giving a
purpose (`X-Purpose`), and the export is written to the access audit before any of it leaves
(so it lists itself). A customer exports their own at `/v1/me/export`, with a weak ETag: the
document's time differs between two exports of the same data. An erased subject has no export:
410, as every read.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, Parameter
from litestar.response import Stream

from api.auth import Principal, compliance_only, customer_only
from api.customer_requests import IfNoneMatch, Me
from api.etags import NotModified, check_not_modified
from api.routes.agent import audited_what
from continuity.audit import MAX_PURPOSE
from continuity.export import Prepared, SubjectExport, SubjectExports
from continuity.runtime import Runtime

Officer = Request[Principal, Any, Any]
SubjectId = Annotated[UUID, Parameter(description="The data subject's id.")]
JSON = "application/json"
Purpose = Annotated[
    str,
    HeaderParameter(
        name="X-Purpose",
        min_length=3,
        max_length=MAX_PURPOSE,
        description='Why the officer exports this subject\'s data ("Art. 15 request 2026-031"):'
        " recorded, sealed, in the access audit.",
    ),
]

_DOCUMENT = {
    200: ResponseSpec(
        data_container=SubjectExport,
        generate_examples=False,
        description="The export, written as it is read: every event of every stream (payloads"
        " opened; placeholders for what an erasure or retention made unreadable), the current"
        " views, devices, identifiers (their kinds: only keyed hashes are held), consents, the"
        " access audit and the timeline, for the subject and each guest linked to them.",
    )
}


def _stream(exports: SubjectExports, prepared: Prepared, headers: dict[str, str]) -> Stream:
    name = f"continuity-export-{prepared.subject_id}.json"
    return Stream(
        exports.chunks(prepared),
        media_type=JSON,
        headers={**headers, "Content-Disposition": f'attachment; filename="{name}"'},
    )


class PrivacyExportController(Controller):
    path = "/v1/privacy/subjects"
    guards = [compliance_only]
    tags = ["privacy"]

    @get(
        "/{subject_id:uuid}/export",
        summary="Everything held about a subject, decrypted (audited)",
        responses=_DOCUMENT,
    )
    async def export(
        self,
        request: Officer,
        runtime: NamedDependency[Runtime],
        subject_id: SubjectId,
        purpose: Purpose,
    ) -> Stream:
        """404 when nothing at all is held about the subject; 410 once they are erased (the
        access audit still answers for them). The export is in the access audit before any of
        it is sent, and lists itself there."""
        exports = SubjectExports(runtime)
        await exports.held(subject_id)
        await runtime.audit.record(
            request.user.subject_id, subject_id, audited_what(request), purpose
        )
        return _stream(exports, await exports.prepare(subject_id), {})


class MyExportController(Controller):
    path = "/v1/me/export"
    guards = [customer_only]
    tags = ["privacy"]

    @get(
        "",
        summary="Everything held about the customer, decrypted, to keep or take elsewhere",
        responses=_DOCUMENT,
    )
    async def my_export(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        if_none_match: IfNoneMatch = None,
    ) -> Stream:
        """The ETag is weak: two exports of the same data differ in `exported_at` only."""
        exports = SubjectExports(runtime)
        prepared = await exports.prepare(request.user.subject_id)
        tag = f'"{prepared.fingerprint()}"'
        try:
            check_not_modified(if_none_match, tag)
        except NotModified:
            raise NotModified(f"W/{tag}") from None
        return _stream(exports, prepared, {"ETag": f"W/{tag}"})
