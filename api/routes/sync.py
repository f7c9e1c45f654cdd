"""The offline sync route (`POST /v1/me/sync`): a device flushes the actions it queued offline."""

from __future__ import annotations

from litestar import Controller, Response, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from api.auth import customer_only
from api.customer_requests import ChannelHeader, Me, customer_meta
from api.etags import content_etag
from api.problems import IDEMPOTENCY_KEY_REUSED, to_problem
from api.sync_schemas import ActionProblem, ActionResult, SyncAnswer, SyncBatch
from continuity.errors import EventIdReused
from continuity.runtime import Runtime
from continuity.sync import Rejected


def _problem(request: Me, error: Exception) -> ActionProblem:
    """A rejected action's problem, as the same error alone would be answered; a reused
    event_id is named as such (alone, it is the Idempotency-Key)."""
    if isinstance(error, EventIdReused):
        problem = IDEMPOTENCY_KEY_REUSED(
            "this event_id was already used for a different action", field="event_id"
        )
    else:
        problem = to_problem(request, error)
    return ActionProblem.of(
        problem.type_ or "about:blank",
        problem.title or "",
        problem.status_code,
        problem.detail,
        problem.extra if isinstance(problem.extra, dict) else {},
    )


class SyncController(Controller):
    path = "/v1/me/sync"
    guards = [customer_only]
    tags = ["device"]

    @post(
        "",
        status_code=200,
        summary="Flush an offline queue: each action applied, a duplicate, or rejected",
    )
    async def sync(
        self,
        request: Me,
        runtime: NamedDependency[Runtime],
        data: JSONBody[SyncBatch],
        channel: ChannelHeader = None,
    ) -> Response[SyncAnswer]:
        actions = [a.action() for a in data.actions]
        outcomes = await runtime.sync.apply(
            request.user.subject_id, customer_meta(request.user, channel), actions
        )
        body = SyncAnswer(
            [
                ActionResult.of(
                    action.event_id,
                    outcome,
                    _problem(request, outcome.error) if isinstance(outcome, Rejected) else None,
                )
                for action, outcome in zip(actions, outcomes, strict=True)
            ]
        )
        return Response(body, headers={"ETag": content_etag(body)})
