"""What the OpenAPI schema says each operation answers, written in one place from the catalog.

Litestar documents each operation's success and a 400 in its own validation shape, which is
not what the API sends. `document_answers` rewrites every operation's responses after the
schema is built: each status it can answer, with the `application/problem+json` shape of RFC
9457 and the problem types (from `api.problems`) that status carries; `ETag` on what carries
one; and the formats `If-Match`, `If-None-Match`, `Idempotency-Key` and `X-Channel` accept.

Which statuses apply is read from the operation itself: a token (401, 403), a body (400, 413,
415, 422), parameters (400), `If-Match` (412), `If-None-Match` (304), a customer's write (409,
410, 422) or read (410), no token (429); the few route-specific ones are in `_SPECIFIC`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from http import HTTPStatus

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
)

from aggregates.application import MAX_DRAFT_TEXT, MAX_NUMBER
from aggregates.forms import MAX_FIELDS
from api import (
    activity_schemas,
    application_schemas,
    consent_schemas,
    conversation_schemas,
    device_schemas,
    privacy_schemas,
    schemas,
    sync_schemas,
)
from api.customer_requests import CUSTOMER_CHANNELS
from api.limits import MAX_VERSION_DIGITS
from api.problems import (
    APPLICATION_EXPIRED,
    BODY_TOO_LARGE,
    CHANNEL_NOT_ALLOWED,
    CONFLICT,
    CONSENT_REQUIRED,
    DATABASE_UNAVAILABLE,
    DOMAIN_RULE,
    ERASURE_NOT_COMPLETED,
    FORBIDDEN,
    HANDOFF_CODE_EXPIRED,
    HANDOFF_CODE_USED,
    HANDOFF_CODE_WRONG,
    IDEMPOTENCY_KEY_REUSED,
    IDENTIFIER_SUPPRESSED,
    INTEGRITY,
    INTERNAL,
    INVALID_ANSWERS,
    INVALID_REQUEST,
    INVALID_STATE,
    INVALID_TOKEN,
    INVALID_VALUE,
    MALFORMED_BODY,
    MISSING_TOKEN,
    NO_CART,
    NOT_FOUND,
    RATE_LIMITED,
    STALE_VERSION,
    SUBJECT_ERASED,
    TOKEN_EXPIRED,
    TOO_MANY_WRONG_CODES,
    UNSUPPORTED_MEDIA_TYPE,
    WEAK_ETAG,
    ProblemType,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM = "Problem"
IF_MATCH = rf'^(\*|"(0|[1-9][0-9]{{0,{MAX_VERSION_DIGITS - 1}}})")$'
"""`*` or a cart version as a strong ETag: all that If-Match accepts."""
ENTITY_TAGS = r'^(\*|[ \t]*((W/)?"[!#-~]*"[ \t]*(,[ \t]*(W/)?"[!#-~]*"[ \t]*)*)?)$'
"""`*` or a comma-separated list of entity-tags (RFC 9110), as If-None-Match accepts; an empty
list too, which RFC 9110 (5.6.1) has recipients accept, and which matches nothing."""

_APPLICATION = "/v1/me/applications/{application_id}"
_AN_ACTION = (NOT_FOUND, INVALID_ANSWERS, APPLICATION_EXPIRED)
_SPECIFIC: dict[tuple[str, str], tuple[ProblemType, ...]] = {
    ("GET", "/v1/me/cart"): (NO_CART,),
    ("PATCH", "/v1/me/cart/items/{sku}"): (NOT_FOUND,),
    ("DELETE", "/v1/me/cart/items/{sku}"): (NOT_FOUND,),
    ("POST", "/v1/me/cart/checkout"): (NOT_FOUND,),
    ("POST", "/v1/me/applications"): (NOT_FOUND,),
    ("GET", _APPLICATION): (NOT_FOUND,),
    ("PATCH", f"{_APPLICATION}/steps/{{step}}/draft"): _AN_ACTION,
    ("POST", f"{_APPLICATION}/steps/{{step}}/complete"): _AN_ACTION,
    ("POST", f"{_APPLICATION}/back"): _AN_ACTION,
    ("POST", f"{_APPLICATION}/submit"): _AN_ACTION,
    ("POST", f"{_APPLICATION}/withdraw"): _AN_ACTION,
    ("GET", "/v1/agent/applications/{application_id}"): (NOT_FOUND,),
    ("GET", "/v1/agent/customers/{customer_id}/session"): (NOT_FOUND,),
    **{
        (method, f"{prefix}/{{conversation_id}}{action}"): (NOT_FOUND,)
        for prefix, routes in (
            ("/v1/me/conversations", ("", "/turns", "/handoff", "/resolve", "/rating", "/reopen")),
            ("/v1/agent/conversations", ("", "/accept", "/turns", "/transfer", "/resolve")),
            ("/v1/service/conversations", ("", "/turns", "/handoff")),
        )
        for action in routes
        for method in (("GET",) if action == "" else ("POST",))
    },
    ("POST", "/v1/me/identifiers"): (INVALID_STATE, IDENTIFIER_SUPPRESSED),
    ("POST", "/v1/me/sync"): (CONFLICT,),
    ("POST", "/v1/agent/customers/{customer_id}/identifiers"): (
        INVALID_STATE,
        IDENTIFIER_SUPPRESSED,
        NOT_FOUND,
    ),
    ("POST", "/v1/service/inbound"): (IDENTIFIER_SUPPRESSED,),
    ("GET", "/v1/agent/customers/{customer_id}/timeline"): (NOT_FOUND,),
    ("GET", "/v1/agent/customers/{customer_id}/events"): (NOT_FOUND,),
    ("POST", "/v1/sessions/redeem"): (
        HANDOFF_CODE_WRONG,
        HANDOFF_CODE_USED,
        HANDOFF_CODE_EXPIRED,
        TOO_MANY_WRONG_CODES,
        SUBJECT_ERASED,
    ),
    ("DELETE", "/v1/me/devices/{device_id}"): (NOT_FOUND,),
    ("POST", "/v1/me/link"): (INVALID_STATE,),
    ("POST", "/v1/me/activity"): (CONSENT_REQUIRED,),
    ("GET", "/v1/privacy/subjects/{subject_id}/export"): (NOT_FOUND,),
    ("GET", "/v1/me/consents/{purpose}"): (NOT_FOUND,),
    ("GET", "/v1/privacy/subjects/{subject_id}/consents"): (NOT_FOUND,),
    ("PUT", "/v1/me/consents/{purpose}"): (NOT_FOUND,),
    ("POST", "/v1/agent/conversations/{conversation_id}/turns"): (NOT_FOUND, CONSENT_REQUIRED),
    ("POST", "/v1/service/conversations/{conversation_id}/turns"): (NOT_FOUND, CONSENT_REQUIRED),
    ("POST", "/v1/privacy/erasures"): (NOT_FOUND,),
    ("GET", "/v1/privacy/erasures/{request_id}"): (NOT_FOUND,),
    ("GET", "/v1/privacy/erasures/{request_id}/certificate"): (NOT_FOUND, ERASURE_NOT_COMPLETED),
    ("GET", "/v1/privacy/subjects/{subject_id}/hold"): (NOT_FOUND,),
    ("PUT", "/v1/privacy/subjects/{subject_id}/hold"): (NOT_FOUND, INVALID_STATE),
    ("DELETE", "/v1/privacy/subjects/{subject_id}/hold"): (NOT_FOUND,),
    ("DELETE", "/v1/privacy/suppressions"): (NOT_FOUND,),
}
"""Problems only one operation answers, by method and path."""

_EVENT_STREAMS = frozenset(
    {
        ("GET", "/v1/me/session/events"),
        ("GET", "/v1/agent/customers/{customer_id}/events"),
        ("GET", "/v1/agent/conversations/events"),
    }
)
"""Operations that answer with Server-Sent Events (no ETag: a stream has no one version)."""
_EVENT_STREAM = OpenAPIMediaType(
    schema=Schema(
        type=OpenAPIType.STRING,
        description="Server-Sent Events: `id` the log position, `event` the kind, `data` a"
        " LiveEvent in JSON (docs/api.md, Live updates); comment lines keep the stream alive.",
    )
)

_STATUS_DOWN = ("GET", "/health"), ("GET", "/ready")
"""Operations that answer 503 with their own body when the database is unreachable."""

_ETAG = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING),
    description='The representation\'s strong ETag; for a cart, its version (`"3"`).',
)
_SENT_ETAG = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING),
    description=_ETAG.description,
    required=True,
)
"""`ETag` where every answer carries one (a customer's 200s and 304s)."""
_RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=0),
    description="Seconds to wait before trying again.",
)
_WWW_AUTHENTICATE = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING),
    description='The Bearer challenge (RFC 6750); `error="invalid_token"` when a token was sent.',
)


def problem_schema() -> Schema:
    """RFC 9457's members and our extensions; nothing else is ever sent."""
    string = Schema(type=OpenAPIType.STRING)
    error = Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "field": Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL]),
            "source": Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL]),
            "message": string,
        },
        required=["field", "source", "message"],
        additional_properties=False,
    )
    return Schema(
        type=OpenAPIType.OBJECT,
        description="An RFC 9457 problem; docs/errors.md lists every `type`.",
        properties={
            "type": Schema(type=OpenAPIType.STRING, description="The problem type's URI."),
            "title": Schema(type=OpenAPIType.STRING, description="The problem type's title."),
            "status": Schema(type=OpenAPIType.INTEGER, minimum=400, maximum=599),
            "detail": Schema(type=OpenAPIType.STRING, description="What went wrong here."),
            "instance": Schema(
                type=OpenAPIType.STRING,
                pattern=r"^urn:request:",
                description="`urn:request:<id>`, the id also sent in `X-Request-ID`.",
            ),
            "field": Schema(
                type=OpenAPIType.STRING, description="The input at fault (a body field, header)."
            ),
            "errors": Schema(
                type=OpenAPIType.ARRAY, items=error, description="Each input at fault (400)."
            ),
            "current_version": Schema(
                type=OpenAPIType.INTEGER,
                minimum=0,
                description="The cart's or application's version now.",
            ),
            "current": Schema(
                type=OpenAPIType.OBJECT,
                description="On a 412 for an application: the application as it is now (the"
                " shape of `ApplicationDetail`), to merge with.",
            ),
            "purpose": Schema(
                type=OpenAPIType.STRING,
                description="The purpose the customer refused (consent-required).",
            ),
            "token_expired": Schema(
                type=OpenAPIType.BOOLEAN, description="Whether the refused token only expired."
            ),
        },
        required=["type", "title", "status", "detail"],
        additional_properties=False,
    )


def problem_response(status: int, types: Iterable[ProblemType]) -> OpenAPIResponse:
    """A problem answer with `status`, whose `type` is one of `types` (or `about:blank`)."""
    kinds = list(dict.fromkeys(types))
    uris = [kind.uri for kind in kinds] or ["about:blank"]
    lines = [f"- `{kind.slug}`: {kind.title}" for kind in kinds]
    headers: dict[str, OpenAPIHeader | Reference] = {}
    if status == 401:
        headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
    if status == 412:
        headers["ETag"] = _ETAG
    if status in (429, 503):
        headers["Retry-After"] = _RETRY_AFTER
    schema = Schema(
        all_of=[
            Reference(ref=f"#/components/schemas/{PROBLEM}"),
            Schema(
                properties={
                    "type": Schema(type=OpenAPIType.STRING, enum=uris),
                    "status": Schema(type=OpenAPIType.INTEGER, const=status),
                }
            ),
        ]
    )
    return OpenAPIResponse(
        description="\n".join([HTTPStatus(status).phrase, *lines]),
        headers=headers or None,
        content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=schema)},
    )


def _header(operation: Operation, name: str) -> Parameter | None:
    for parameter in operation.parameters or []:
        if isinstance(parameter, Parameter) and parameter.name.lower() == name.lower():
            return parameter
    return None


def _problems(method: str, path: str, operation: Operation) -> Iterator[ProblemType]:
    secured = operation.security is None
    has_body = operation.request_body is not None
    if has_body or operation.parameters:
        yield INVALID_REQUEST
    if has_body:
        yield from (MALFORMED_BODY, BODY_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, INVALID_VALUE)
        yield DOMAIN_RULE
    if secured:
        yield from (MISSING_TOKEN, INVALID_TOKEN, TOKEN_EXPIRED, FORBIDDEN, SUBJECT_ERASED)
    else:
        yield RATE_LIMITED
    if _header(operation, "X-Channel") is not None:
        yield CHANNEL_NOT_ALLOWED
    if _header(operation, "If-Match") is not None:
        yield from (STALE_VERSION, WEAK_ETAG)
    if _header(operation, "Idempotency-Key") is not None:
        yield from (INVALID_STATE, CONFLICT, INVALID_VALUE, DOMAIN_RULE, IDEMPOTENCY_KEY_REUSED)
    yield from _SPECIFIC.get((method, path), ())
    yield from (INTERNAL, INTEGRITY)
    if (method, path) not in _STATUS_DOWN:
        yield DATABASE_UNAVAILABLE


def _formats(operation: Operation) -> None:
    """Say exactly what the conditional and idempotency headers accept."""
    formats = {
        "If-Match": Schema(type=OpenAPIType.STRING, pattern=IF_MATCH),
        "If-None-Match": Schema(type=OpenAPIType.STRING, pattern=ENTITY_TAGS, examples=['"3"']),
        "Idempotency-Key": Schema(type=OpenAPIType.STRING, format="uuid"),  # type: ignore[arg-type]
        "X-Channel": Schema(type=OpenAPIType.STRING, enum=sorted(CUSTOMER_CHANNELS)),
    }
    for name, schema in formats.items():
        if (parameter := _header(operation, name)) is not None:
            schema.description = parameter.description
            parameter.schema = schema


def _answers(method: str, path: str, operation: Operation) -> None:
    responses = operation.responses or {}
    success = {code: answer for code, answer in responses.items() if code.startswith("2")}
    for code in [code for code in responses if code[0] in "45"]:
        del responses[code]
    for code, answer in success.items():
        if (method, path) in _STATUS_DOWN:
            responses["503"] = OpenAPIResponse(
                description="Service Unavailable: the database is unreachable, or migrations are"
                " pending.",
                content=answer.content if isinstance(answer, OpenAPIResponse) else None,
            )
        if (method, path) in _EVENT_STREAMS and isinstance(answer, OpenAPIResponse):
            answer.content = {"text/event-stream": _EVENT_STREAM}
            answer.description = "A stream of Server-Sent Events, open until the client leaves."
        elif path.startswith("/v1/me/") and code != "204" and isinstance(answer, OpenAPIResponse):
            answer.headers = {**(answer.headers or {}), "ETag": _SENT_ETAG}
            responses[code] = answer
    if _header(operation, "If-None-Match") is not None:
        responses["304"] = OpenAPIResponse(
            description="Not Modified: the ETag sent is still current.",
            headers={"ETag": _SENT_ETAG},
        )
    by_status: dict[int, list[ProblemType]] = {}
    for kind in _problems(method, path, operation):
        by_status.setdefault(kind.status, []).append(kind)
    for status, kinds in sorted(by_status.items()):
        responses[str(status)] = problem_response(status, kinds)
    operation.responses = dict(sorted(responses.items()))


def _body_struct(name: str) -> type[msgspec.Struct] | None:
    """The request body struct a component is named after, if it is one (decoded with
    `forbid_unknown_fields`)."""
    for module in (
        schemas,
        application_schemas,
        conversation_schemas,
        device_schemas,
        activity_schemas,
        sync_schemas,
        privacy_schemas,
        consent_schemas,
    ):
        struct = getattr(module, name, None)
        if (
            isinstance(struct, type)
            and issubclass(struct, msgspec.Struct)
            and struct.__struct_config__.forbid_unknown_fields
        ):
            return struct
    return None


def _closed_bodies(components: dict[str, Schema]) -> None:
    """Bodies decoded with `forbid_unknown_fields` say so: `additionalProperties: false`
    (Litestar leaves it out, so the schema accepted fields the API refuses)."""
    for name, schema in components.items():
        if _body_struct(name) is not None:
            schema.additional_properties = False


_BOUNDS = {
    "minimum": "minimum",
    "maximum": "maximum",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
}


def _optional_bounds(components: dict[str, Schema]) -> None:
    """An optional bounded field of a body (`Annotated[int, Meta(ge=0)] | None`) keeps its
    bounds (and its format: an optional UUID's) inside its non-null branch, as msgspec's own
    schema has them: Litestar puts them beside the `oneOf`, where they bind nothing, and drops a
    bound of 0."""
    for name, schema in components.items():
        struct = _body_struct(name)
        if struct is None:
            continue
        _, defs = msgspec.json.schema_components([struct])
        fields = defs[struct.__name__].get("properties", {})
        for field, prop in (schema.properties or {}).items():
            branches = fields.get(field, {}).get("anyOf")
            if not isinstance(prop, Schema) or not prop.one_of or not branches:
                continue
            if any("type" not in branch for branch in branches):
                continue
            prop.one_of = [
                Schema(
                    type=OpenAPIType(branch["type"]),
                    format=OpenAPIFormat(branch["format"]) if "format" in branch else None,
                    **{_BOUNDS[k]: v for k, v in branch.items() if k in _BOUNDS},
                )
                for branch in branches
            ]
            for attribute in _BOUNDS.values():
                setattr(prop, attribute, None)


_WITH_ANSWERS = ("StepAnswers", "SaveDraftOperation", "CompleteStepOperation")
"""The bodies whose `values` are a step's answers."""


def _answer_values(components: dict[str, Schema]) -> None:
    """The bounds of a step's answers, which Litestar leaves out of a dict of a union: how many
    fields, how long a field's name, how long a text and how large a number."""
    for name in _WITH_ANSWERS:
        answers = components.get(name)
        values = (answers.properties or {}).get("values") if answers is not None else None
        if not isinstance(values, Schema):
            continue
        values.max_properties = MAX_FIELDS
        values.property_names = Schema(type=OpenAPIType.STRING, max_length=63)
        values.additional_properties = Schema(
            one_of=[
                Schema(type=OpenAPIType.STRING, max_length=MAX_DRAFT_TEXT),
                Schema(type=OpenAPIType.INTEGER, minimum=-MAX_NUMBER, maximum=MAX_NUMBER),
                Schema(type=OpenAPIType.BOOLEAN),
                Schema(type=OpenAPIType.NULL),
            ]
        )


def document_answers(openapi: OpenAPI) -> OpenAPI:
    """Rewrite `openapi`'s responses and header formats in place (see the module's docstring)."""
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    _closed_bodies(openapi.components.schemas)
    _optional_bounds(openapi.components.schemas)
    _answer_values(openapi.components.schemas)
    openapi.components.schemas[PROBLEM] = problem_schema()
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch", "head", "options"):
            operation = getattr(item, method, None)
            if isinstance(operation, Operation):
                _formats(operation)
                _answers(method.upper(), path, operation)
    return openapi


class _DocumentedOpenAPI(OpenAPIPlugin):
    """Litestar's builder, with `document_answers` applied to what it builds."""

    __slots__ = ()

    def _build_openapi(self) -> OpenAPI:
        return document_answers(super()._build_openapi())


def document_lazily(app: Litestar) -> None:
    """Have `app` run `document_answers` on its schema when it is first built, on the first read
    (`/schema`, `app.openapi_schema`) rather than at start: building it is half of what making
    the app costs (about 0.15 s), paid by every worker and every test. Litestar has no hook after
    the build and finds its plugin by exact type, so the plugin it registered changes class to a
    subclass with the same slots."""
    plugin = app.plugins.get(OpenAPIPlugin)
    plugin.__class__ = _DocumentedOpenAPI
