"""RFC 9457 problem details for every error the API answers with.

Every problem has a stable `type` (a URI under `PROBLEM_BASE`) and `title` from the catalog
below, which docs/errors.md lists (a test holds the two together). A `detail` says what went
wrong in this request; it never carries an exception's text, a log position or a stream id.
Expected 4xx answers are logged at INFO in one line; 5xx at ERROR with the traceback.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.params import HeaderParameter, QueryParameter
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.types import (
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from aggregates.application import Expired, StepProblems
from aggregates.errors import (
    ConsentRequired,
    DomainError,
    InvalidState,
    InvalidValue,
    NotFound,
)
from api.issuers import TokenExpired
from api.request_context import request_urn
from continuity.cursors import BadCursor
from continuity.db import unavailable
from continuity.erasure_requests import NotCompleted
from continuity.errors import (
    ConcurrencyConflict,
    EventIdReused,
    IntegrityViolation,
    PreconditionFailed,
    SubjectErased,
)
from continuity.handoff import CodeRefused, TooManyFailures
from continuity.identifiers import Suppressed

PROBLEM_BASE = "https://continuity.dev/problems/"
REALM = "continuity"
log = logging.getLogger("continuity.api")


@dataclass(frozen=True)
class ProblemType:
    """One kind of problem: its stable URI slug, status and title, and when it is answered."""

    slug: str
    status: int
    title: str
    when: str

    @property
    def uri(self) -> str:
        return PROBLEM_BASE + self.slug

    def __call__(
        self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> ProblemDetailsException:
        return ProblemDetailsException(
            status_code=self.status,
            type_=self.uri,
            title=self.title,
            detail=detail,
            extra={k: v for k, v in extra.items() if v is not None} or None,
            headers=headers,
        )


PROBLEM_TYPES: list[ProblemType] = []


def _type(slug: str, status: int, title: str, when: str) -> ProblemType:
    problem_type = ProblemType(slug, status, title, when)
    PROBLEM_TYPES.append(problem_type)
    return problem_type


INVALID_REQUEST = _type(
    "invalid-request",
    400,
    "Invalid request",
    "A body field, header or path parameter is not what the schema accepts. `field` names the"
    " first one at fault, `errors` lists each (`field`, `source`, `message`).",
)
MALFORMED_BODY = _type(
    "malformed-body",
    400,
    "Malformed body",
    "The body is not JSON, not UTF-8, or nests arrays and objects deeper than the limit.",
)
MISSING_TOKEN = _type(
    "missing-token",
    401,
    "Authentication required",
    'No bearer token was sent. `WWW-Authenticate: Bearer realm="continuity"`.',
)
INVALID_TOKEN = _type(
    "invalid-token",
    401,
    "Invalid token",
    "The bearer token failed a check (signature, issuer, audience, role, claims); `detail`"
    ' says which. `WWW-Authenticate: Bearer error="invalid_token"`.',
)
TOKEN_EXPIRED = _type(
    "token-expired",
    401,
    "Token expired",
    'The bearer token is past its `exp`: get a new one. `WWW-Authenticate: Bearer error="'
    'invalid_token", error_description="the token expired"`.',
)
FORBIDDEN = _type(
    "forbidden", 403, "Forbidden", "The token is valid, but its role may not use this route."
)
CHANNEL_NOT_ALLOWED = _type(
    "channel-not-allowed",
    403,
    "Channel not allowed",
    "`X-Channel` is agent or system, which a customer's device may not claim.",
)
CONSENT_REQUIRED = _type(
    "consent-required",
    403,
    "Consent required",
    "The customer has not consented to the purpose this action serves (`purpose`:"
    " personalization, for `POST /v1/me/activity`; marketing, for an agent's or bot's turn"
    " marked `marketing`); nothing was recorded. `PUT /v1/me/consents/{purpose}` gives it.",
)
CORS_REFUSED = _type(
    "cors-refused",
    403,
    "Cross-origin request refused",
    "A browser's preflight from an origin not in `CONTINUITY_CORS_ORIGINS`, or asking for a"
    " method or header the API does not allow. The answer carries no `Access-Control-*` header.",
)
NOT_FOUND = _type(
    "not-found",
    404,
    "Not found",
    "No such route, or the command names something that does not exist (an item not in the"
    " cart, no open cart); `field` says which input, if one.",
)
NO_CART = _type("no-cart", 404, "No cart yet", "`GET /v1/me/cart` before the first item.")
METHOD_NOT_ALLOWED = _type(
    "method-not-allowed",
    405,
    "Method not allowed",
    "The route exists but not with this method; `Allow` lists the methods it has.",
)
INVALID_STATE = _type(
    "invalid-state",
    409,
    "Not allowed in the current state",
    "The command cannot apply to the resource as it is (changing a checked-out cart, checking"
    " out an empty one).",
)
CONFLICT = _type(
    "conflict",
    409,
    "Concurrent change",
    "Without `If-Match`, the cart kept changing under this request (or another request kept"
    " changing what a sync batch acts on) after several retries; `current_version` is its"
    " version now.",
)
SUBJECT_ERASED = _type(
    "subject-erased", 410, "Subject erased", "The customer's data was erased (crypto-shredded)."
)
STALE_VERSION = _type(
    "stale-version",
    412,
    "Precondition failed",
    "`If-Match` names a version the cart or application is no longer at; `current_version`"
    " and `ETag` give the current one, and for an application `current` is the application as"
    " it is now, to merge with. In a sync answer: an action that conflicts with a change after"
    " its `base_version` (docs/sync.md).",
)
INVALID_ANSWERS = _type(
    "invalid-answers",
    422,
    "Answers need fixing",
    "A step's answers, or an application being submitted, did not pass its form's rules:"
    " `errors` names each failing field (`step.field`, or a step not yet complete) with what is"
    " wrong; `field` is the first. The answers themselves are never repeated.",
)
APPLICATION_EXPIRED = _type(
    "application-expired",
    409,
    "Application expired",
    "The application sat idle past the operator's limit and expired: it can no longer change."
    " Start a new one.",
)
WEAK_ETAG = _type(
    "weak-etag",
    412,
    "Weak ETag in If-Match",
    '`If-Match` sent a weak ETag (`W/"3"`): writes compare strongly (RFC 9110 13.1.1), and a'
    ' weak tag never matches. Send the ETag as given, e.g. `"3"`.',
)
BODY_TOO_LARGE = _type(
    "body-too-large", 413, "Body too large", "The body is larger than the limit (64 KiB)."
)
UNSUPPORTED_MEDIA_TYPE = _type(
    "unsupported-media-type",
    415,
    "Unsupported media type",
    "A route with a body got a `Content-Type` other than `application/json` or `*/*+json`, or"
    " none.",
)
INVALID_VALUE = _type(
    "invalid-value",
    422,
    "Invalid value",
    "A well-formed value the domain refuses: a price finer than the currency's minor unit,"
    " a quantity that would pass the maximum, a currency other than the cart's.",
)
DOMAIN_RULE = _type(
    "domain-rule",
    422,
    "Business rule violated",
    "Another business rule, such as the most different items a cart holds.",
)
IDEMPOTENCY_KEY_REUSED = _type(
    "idempotency-key-reused",
    422,
    "Idempotency key reused",
    "An `Idempotency-Key`, or a sync action's `event_id`, already used by this customer for a"
    " different request.",
)
RATE_LIMITED = _type(
    "rate-limited",
    429,
    "Too many requests",
    "Too many requests without a token from one client within a minute; `Retry-After` says"
    " when to try again.",
)
IDENTIFIER_SUPPRESSED = _type(
    "identifier-suppressed",
    409,
    "Identifier suppressed",
    "The email address or phone number belonged to an erased customer: messages from it, and"
    " registering it, are refused until a compliance officer lifts the suppression"
    " (`continuity suppression lift`).",
)
ERASURE_NOT_COMPLETED = _type(
    "erasure-not-completed",
    409,
    "Erasure not completed",
    "The erasure request has no certificate yet: it is received, executing, blocked by a legal"
    " hold, or failed (`GET /v1/privacy/erasures/{id}` says which).",
)
HANDOFF_CODE_WRONG = _type(
    "handoff-code-wrong",
    422,
    "Wrong handoff code",
    "`POST /v1/sessions/redeem` with a code that matches no live code. Each one counts against"
    " the client's limit, and a wrong code whose first half names a live code counts against"
    " that code.",
)
HANDOFF_CODE_USED = _type(
    "handoff-code-used",
    409,
    "Handoff code used",
    "The handoff code was redeemed already (a code is single-use): ask for a new one.",
)
HANDOFF_CODE_EXPIRED = _type(
    "handoff-code-expired",
    410,
    "Handoff code expired",
    "The handoff code is past its `expires_at`, or was burnt by too many wrong tries.",
)
TOO_MANY_WRONG_CODES = _type(
    "too-many-wrong-codes",
    429,
    "Too many wrong handoff codes",
    "This client sent too many wrong handoff codes in the window; `Retry-After` says when it"
    " may try again.",
)
INTERNAL = _type(
    "internal", 500, "Internal server error", "An unexpected error; it was logged with a trace."
)
INTEGRITY = _type(
    "integrity",
    500,
    "Stored data failed its integrity check",
    "A stored event or view did not authenticate or decode; operators are alerted by the log.",
)

DATABASE_UNAVAILABLE = _type(
    "database-unavailable",
    503,
    "The database is unavailable",
    "The database could not be reached, or did not answer within the configured timeouts"
    " (`CONTINUITY_POOL_TIMEOUT`, `CONTINUITY_STATEMENT_TIMEOUT`). Retry after `Retry-After`"
    " seconds; an action sent again with the same `Idempotency-Key` is recorded exactly once,"
    " whether or not the first attempt was.",
)
RETRY_AFTER_UNAVAILABLE = 2
"""Seconds a client is asked to wait after a 503: a database restart is usually back by then,
and a crowd of clients retrying sooner would only add to the load of one coming back."""

_BY_STATUS: dict[int, ProblemType] = {
    400: INVALID_REQUEST,
    401: INVALID_TOKEN,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    413: BODY_TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
}
"""Problems for Litestar's own HTTP exceptions, by status. Any other status is answered as
RFC 9457's `about:blank`: its title is the status's name."""


def _domain(exc: DomainError) -> ProblemDetailsException:
    if isinstance(exc, StepProblems):
        errors = [
            {"field": p.field, "source": "body" if "." in p.field else None, "message": p.message}
            for p in exc.problems
        ]
        return INVALID_ANSWERS(str(exc), field=exc.field, errors=errors)
    if isinstance(exc, Expired):
        return APPLICATION_EXPIRED(str(exc))
    if isinstance(exc, ConsentRequired):
        return CONSENT_REQUIRED(str(exc), purpose=exc.purpose)
    if isinstance(exc, NotFound):
        return NOT_FOUND(str(exc), field=exc.field)
    if isinstance(exc, Suppressed):
        return IDENTIFIER_SUPPRESSED(str(exc), field=exc.field)
    if isinstance(exc, NotCompleted):
        return ERASURE_NOT_COMPLETED(str(exc), field=exc.field)
    if isinstance(exc, InvalidState):
        return INVALID_STATE(str(exc), field=exc.field)
    if isinstance(exc, InvalidValue):
        return INVALID_VALUE(str(exc), field=exc.field)
    return DOMAIN_RULE(str(exc), field=exc.field)


_MISSING = re.compile(r"Missing required (\w+) parameter '([^']+)'")
_BODY_PATH = re.compile(r"at `\$\.([^`]+)`")
_BODY_FIELD = re.compile(r"field `([^`]*)`")


def _field_of(key: object, message: str) -> object:
    """Name the failing field: msgspec reports a body error against the whole body ("data") and
    says which field in its message (`$.quantity`, "missing required field `sku`")."""
    if key == "data":
        found = _BODY_PATH.search(message) or _BODY_FIELD.search(message)
        if found:
            return found.group(1)
    return key


def _header_names(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The route's header parameters (and query parameters named apart from their argument) by
    their Python names: Litestar reports a header's error under the handler's argument
    (`purpose`), the client knows it as `X-Purpose` (and `only` as `state`)."""
    try:
        parameters = request.route_handler.parsed_fn_signature.parameters
    except (AttributeError, KeyError):  # no route (a 404), or no handler
        return {}
    names = {}
    for name, parameter in parameters.items():
        definition = parameter.kwarg_definition
        header = getattr(definition, "header", None)
        if header is None and isinstance(definition, HeaderParameter | QueryParameter):
            header = definition.name
        if isinstance(header, str):
            names[name] = header
    return names


def _validation(
    exc: ValidationException, headers: dict[str, str] | None = None
) -> ProblemDetailsException:
    errors = []
    headers = headers or {}
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            message = str(item.get("message") or "")
            key = item.get("key")
            if item.get("source") in ("header", "query") and isinstance(key, str):
                key = headers.get(key, key)
            errors.append(
                {
                    "field": _field_of(key, message),
                    "source": item.get("source"),
                    "message": message,
                }
            )
    missing = _MISSING.match(exc.detail or "")
    if not errors and missing is not None:  # Litestar names a missing parameter in its text only
        source, name = missing.groups()
        errors.append({"field": name, "source": source, "message": f"{name} is required"})
    extra: dict[str, Any] = {"errors": errors}
    if errors:
        extra["field"] = errors[0]["field"]
    detail = str(errors[0]["message"]) if errors and errors[0]["message"] else exc.detail
    return INVALID_REQUEST(detail, **extra)


def _unauthorized(
    request: Request[Any, Any, Any], exc: NotAuthorizedException
) -> ProblemDetailsException:
    """401 with RFC 6750's challenge: no error code when no token was sent, else
    `invalid_token`, and a description that says when the token merely expired."""
    if not request.headers.get("authorization"):
        challenge = f'Bearer realm="{REALM}"'
        return MISSING_TOKEN(
            "send a bearer token: Authorization: Bearer <JWT>",
            headers={"WWW-Authenticate": challenge},
        )
    expired = isinstance(exc, TokenExpired)
    description = "the token expired" if expired else "the token was refused"
    challenge = f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"'
    problem_type = TOKEN_EXPIRED if expired else INVALID_TOKEN
    return problem_type(exc.detail, headers={"WWW-Authenticate": challenge}, token_expired=expired)


def _http(exc: HTTPException) -> ProblemDetailsException:
    """Litestar's own HTTP errors: a stable type and title by status; the detail is the
    exception's only when it says more than the status's name (our own messages do)."""
    problem_type = _BY_STATUS.get(exc.status_code)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if exc.detail and exc.detail.lower() != phrase.lower() else None
    headers = dict(exc.headers or {})
    if problem_type is None:
        return ProblemDetailsException(
            status_code=exc.status_code,
            type_="about:blank",
            title=phrase,
            detail=detail or phrase,
            headers=headers or None,
        )
    return problem_type(detail or problem_type.title, headers=headers or None)


def to_problem(request: Request[Any, Any, Any], exc: Exception) -> ProblemDetailsException:
    """The problem that answers `exc`."""
    if isinstance(exc, ProblemDetailsException):
        return exc
    if isinstance(exc, ValidationException):
        return _validation(exc, _header_names(request))
    if isinstance(exc, BadCursor):
        detail = [{"key": "cursor", "source": "query", "message": str(exc)}]
        return _validation(ValidationException(str(exc), extra=detail), None)
    if isinstance(exc, NotAuthorizedException):
        return _unauthorized(request, exc)
    if isinstance(exc, HTTPException):
        return _http(exc)
    if isinstance(exc, DomainError):
        return _domain(exc)
    if isinstance(exc, PreconditionFailed):
        return STALE_VERSION(
            exc.detail
            or f"If-Match was {exc.expected} but the {exc.what} is at version {exc.current}",
            headers={"ETag": f'"{exc.current}"'},
            current_version=exc.current,
            current=exc.state,
            field=exc.field,
        )
    if isinstance(exc, ConcurrencyConflict):
        return CONFLICT(
            "the cart kept changing while this request ran; retry it",
            current_version=exc.actual,
        )
    if isinstance(exc, SubjectErased):
        return SUBJECT_ERASED("this customer's data was erased")
    if isinstance(exc, EventIdReused):
        return IDEMPOTENCY_KEY_REUSED(
            "this Idempotency-Key was already used for a different request",
            field="Idempotency-Key",
        )
    if isinstance(exc, CodeRefused):
        refused = {"wrong": HANDOFF_CODE_WRONG, "used": HANDOFF_CODE_USED}
        return refused.get(exc.why, HANDOFF_CODE_EXPIRED)(str(exc), field="code")
    if isinstance(exc, TooManyFailures):
        return TOO_MANY_WRONG_CODES(str(exc), headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, IntegrityViolation):
        return INTEGRITY("the error was logged for the operators")
    if unavailable(exc):
        return DATABASE_UNAVAILABLE(
            "the database did not answer; retry this request",
            headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)},
        )
    return INTERNAL("the error was logged")


def _route(request: Request[Any, Any, Any]) -> str:
    """The route's template, not its path: a path may hold whatever a client typed."""
    return str(request.scope.get("path_template") or "(no route)")


def log_problem(
    request: Request[Any, Any, Any], exc: Exception, problem: ProblemDetailsException
) -> None:
    """One line per error answered: 4xx at INFO, a 503 at WARNING, any other 5xx at ERROR with
    the traceback."""
    kind = problem.type_.removeprefix(PROBLEM_BASE) if problem.type_ else "about:blank"
    args = (request.method, _route(request), problem.status_code, kind)
    if problem.status_code == DATABASE_UNAVAILABLE.status:
        log.warning("%s %s answered %s %s (%s)", *args, type(exc).__name__)  # one per request
    elif problem.status_code >= 500:
        log.error("%s %s answered %s %s", *args, exc_info=exc)
    else:
        log.info("%s %s answered %s %s", *args)


def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Answer `exc` as a problem, and log it: 4xx at INFO in one line, 5xx at ERROR with the
    traceback (whose text stays in the log, never in the answer). Every problem names the
    request it answers: `instance` is `urn:request:<id>`, the id also sent in `X-Request-ID`
    and on every log line of the request, so a client's report leads to the logs."""
    problem = to_problem(request, exc)
    log_problem(request, exc, problem)
    response = problem.to_response(request)
    if (urn := request_urn()) and isinstance(response.content, dict):
        response.content.setdefault("instance", urn)
    return response


async def refuse_preflight(scope: Scope, receive: Receive, send: Send, refused: str) -> None:
    """Answer a refused CORS preflight (see `api.cors`), before any route is matched."""
    problem = CORS_REFUSED(refused)
    body: dict[str, Any] = {
        "type": problem.type_,
        "title": problem.title,
        "status": problem.status_code,
        "detail": problem.detail,
    }
    if urn := request_urn():
        body["instance"] = urn
    log.info("OPTIONS (preflight) answered %s cors-refused", problem.status_code)
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": problem.status_code,
        "headers": [(b"content-type", b"application/problem+json")],
    }
    await send(start)
    content: HTTPResponseBodyEvent = {
        "type": "http.response.body",
        "body": msgspec.json.encode(body),
        "more_body": False,
    }
    await send(content)
