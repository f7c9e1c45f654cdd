"""Activity routes (`/v1/me/...`): what a device viewed, searched and is on, and the customer's
preferences (whether activity is recorded at all)."""

from __future__ import annotations

from litestar import Controller, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody

from api.activity_schemas import ActivityBody, ActivitySummary, Preferences
from api.auth import customer_only
from api.customer_requests import (
    ChannelHeader,
    IdempotencyKey,
    IfNoneMatch,
    Me,
    customer_meta,
    idempotency_key_of,
)
from api.etags import check_not_modified, content_etag
from continuity.runtime import Runtime


class ActivityController(Controller):
    path = "/v1/me"
    guards = [customer_only]
    tags = ["activity"]

    @post(
        "/activity",
        status_code=200,
        summary="Record what the device viewed, searched for, and the screen it is on",
    )
    async def record(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        data: JSONBody[ActivityBody],
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[ActivitySummary]:
        """Recorded only while the customer allows personalization (403 consent-required
        otherwise, and nothing is recorded). The answer is the activity as every device of the
        customer now sees it in `GET /v1/me/session`."""
        recorded = await runtime.activity.record(
            request.user.subject_id,
            customer_meta(request.user, channel),
            data.domain_items(),
            idempotency_key=idempotency_key_of(idempotency_key),
        )
        body = ActivitySummary.of(recorded.view)
        return Response(body, headers={"ETag": content_etag(body)})

    @get("/preferences", summary="The customer's preferences (personalization)")
    async def preferences(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        if_none_match: IfNoneMatch = None,
    ) -> Response[Preferences]:
        allowed = await runtime.activity.personalization_allowed(request.user.subject_id)
        body = Preferences(personalization=allowed)
        etag = content_etag(body)
        check_not_modified(if_none_match, etag)
        return Response(body, headers={"ETag": etag})

    @put("/preferences", summary="Allow or refuse personalization (recorded, provable)")
    async def set_preferences(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        data: JSONBody[Preferences],
        idempotency_key: IdempotencyKey = None,
        channel: ChannelHeader = None,
    ) -> Response[Preferences]:
        """Each choice is an event in the customer's log. Refusing stops activity from being
        recorded and clears what the session view showed of it (recently viewed, searches,
        resume points); the log keeps what was recorded before."""
        recorded = await runtime.activity.set_personalization(
            request.user.subject_id,
            customer_meta(request.user, channel),
            data.personalization,
            idempotency_key=idempotency_key_of(idempotency_key),
        )
        body = Preferences(personalization=recorded.view.activity.personalization)
        return Response(body, headers={"ETag": content_etag(body)})
