"""Application routes (`/v1/me/applications`): a customer starts a multi-step application on one
device and finishes it on another, step by step."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from aggregates.application import Application
from api.application_schemas import (
    STEP_PATTERN,
    ApplicationDetail,
    ApplicationSummary,
    GoBack,
    StartApplication,
    StepAnswers,
)
from api.auth import customer_only
from api.customer_requests import (
    ChannelHeader,
    IdempotencyKey,
    IfMatch,
    IfNoneMatch,
    Me,
    customer_meta,
    idempotency_key_of,
)
from api.etags import check_not_modified, content_etag, if_match_version, version_etag
from continuity import applications
from continuity.applications import Action
from continuity.errors import PreconditionFailed
from continuity.runtime import Runtime

ApplicationId = Annotated[UUID, Parameter(description="The application's id.")]
StepPath = Annotated[
    str,
    Parameter(
        min_length=1,
        max_length=63,
        pattern=STEP_PATTERN,
        description="A step of the application's form.",
    ),
]


def _detail(app: Application, status_code: int = 200) -> Response[ApplicationDetail]:
    return Response(
        ApplicationDetail.of(app),
        status_code=status_code,
        headers={"ETag": version_etag(app.version)},
    )


class MyApplicationsController(Controller):
    path = "/v1/me/applications"
    guards = [customer_only]
    tags = ["applications"]

    async def _act(
        self,
        request: Me,
        runtime: Runtime,
        application_id: UUID,
        action: Action,
        if_match: str | None,
        idempotency_key: str | None,
        channel: str | None,
    ) -> Response[ApplicationDetail]:
        try:
            app = await runtime.applications.act(
                request.user.subject_id,
                customer_meta(request.user, channel),
                application_id,
                action,
                idempotency_key=idempotency_key_of(idempotency_key),
                if_match=if_match_version(if_match),
            )
        except PreconditionFailed as stale:
            if isinstance(stale.state, Application):
                stale.state = ApplicationDetail.of(stale.state)
            raise
        return _detail(app)

    @get("", summary="The customer's applications, the most recently active first")
    async def list_applications(
        self, request: Me, runtime: NamedDependency[Runtime], if_none_match: IfNoneMatch = None
    ) -> Response[list[ApplicationSummary]]:
        views = await runtime.applications.of_customer(request.user.subject_id)
        body = [ApplicationSummary.of(v) for v in views]
        etag = content_etag(body)
        check_not_modified(if_none_match, etag)
        return Response(body, headers={"ETag": etag})

    @post("", status_code=201, summary="Start an application on the newest version of a form")
    async def start(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        data: JSONBody[StartApplication],
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ApplicationDetail]:
        app = await runtime.applications.start(
            request.user.subject_id,
            customer_meta(request.user, channel),
            data.form_type,
            idempotency_key=idempotency_key_of(idempotency_key),
        )
        response = _detail(app, 201)
        response.headers["Location"] = f"{self.path}/{app.id}"
        return response

    @get("/{application_id:uuid}", summary="One application, its form and every saved answer")
    async def read(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        application_id: ApplicationId,
        if_none_match: IfNoneMatch = None,
    ) -> Response[ApplicationDetail]:
        app = await runtime.applications.get(request.user.subject_id, application_id)
        check_not_modified(if_none_match, version_etag(app.version))
        return _detail(app)

    @patch(
        "/{application_id:uuid}/steps/{step:str}/draft",
        summary="Save any of a step's fields as a draft, unvalidated",
    )
    async def save_draft(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        application_id: ApplicationId,
        step: StepPath,
        data: JSONBody[StepAnswers],
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ApplicationDetail]:
        action = applications.save_draft(step, data.values)
        return await self._act(
            request, runtime, application_id, action, if_match, idempotency_key, channel
        )

    @post(
        "/{application_id:uuid}/steps/{step:str}/complete",
        status_code=200,
        summary="Complete a step: every field validated, every failing one named (422)",
    )
    async def complete_step(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        application_id: ApplicationId,
        step: StepPath,
        data: JSONBody[StepAnswers],
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ApplicationDetail]:
        action = applications.complete_step(step, data.values)
        return await self._act(
            request, runtime, application_id, action, if_match, idempotency_key, channel
        )

    @post("/{application_id:uuid}/back", status_code=200, summary="Go back to an earlier step")
    async def go_back(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        application_id: ApplicationId,
        data: JSONBody[GoBack],
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ApplicationDetail]:
        action = applications.go_back(data.step)
        return await self._act(
            request, runtime, application_id, action, if_match, idempotency_key, channel
        )

    @post(
        "/{application_id:uuid}/submit",
        status_code=200,
        summary="Submit: refused (422) while a step that applies is not complete",
    )
    async def submit(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        application_id: ApplicationId,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ApplicationDetail]:
        return await self._act(
            request,
            runtime,
            application_id,
            applications.submit(),
            if_match,
            idempotency_key,
            channel,
        )

    @post("/{application_id:uuid}/withdraw", status_code=200, summary="Withdraw the application")
    async def withdraw(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        application_id: ApplicationId,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ApplicationDetail]:
        return await self._act(
            request,
            runtime,
            application_id,
            applications.withdraw(),
            if_match,
            idempotency_key,
            channel,
        )
