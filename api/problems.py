"""RFC 9457 problem details for every error the API answers with."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.config.app import AppConfig
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from litestar.types import ExceptionHandler, ExceptionHandlersMap

from aggregates.errors import DomainError, InvalidState, InvalidValue, NotFound
from api.request_context import request_urn
from continuity.errors import (
    ConcurrencyConflict,
    EventIdReused,
    IntegrityViolation,
    PreconditionFailed,
    SubjectErased,
)

PROBLEM_BASE = "https://continuity.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("continuity.api")


def problem(
    status: int, slug: str, title: str, detail: str, **extra: Any
) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=status,
        type_=PROBLEM_BASE + slug,
        title=title,
        detail=detail,
        extra=extra or None,
    )


def _domain(exc: DomainError) -> ProblemDetailsException:
    field = {"field": exc.field} if exc.field else {}
    if isinstance(exc, NotFound):
        return problem(404, "not-found", "Not found", str(exc), **field)
    if isinstance(exc, InvalidState):
        return problem(409, "invalid-state", "Not allowed in the current state", str(exc), **field)
    if isinstance(exc, InvalidValue):
        return problem(422, "invalid-value", "Invalid value", str(exc), **field)
    return problem(422, "domain-rule", "Business rule violated", str(exc), **field)


def _conflict(exc: ConcurrencyConflict) -> ProblemDetailsException:
    return problem(
        409,
        "conflict",
        "Concurrent change",
        str(exc),
        stream_id=str(exc.stream_id),
        current_version=exc.actual,
    )


def _precondition(exc: PreconditionFailed) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=412,
        type_=PROBLEM_BASE + "stale-version",
        title="Precondition failed",
        detail=f"If-Match was {exc.expected} but the resource is at version {exc.current}",
        extra={"current_version": exc.current},
        headers={"ETag": f'"{exc.current}"'},
    )


def _erased(exc: SubjectErased) -> ProblemDetailsException:
    return problem(410, "subject-erased", "Subject erased", "this customer's data was erased")


def _reused(exc: EventIdReused) -> ProblemDetailsException:
    return problem(
        422,
        "idempotency-key-reused",
        "Idempotency key reused",
        str(exc),
        field="Idempotency-Key",
    )


def _integrity(exc: IntegrityViolation) -> ProblemDetailsException:
    log.error("integrity violation: %s", exc)
    return problem(500, "integrity", "Stored data failed its integrity check", str(exc))


_BODY_PATH = re.compile(r"at `\$\.([^`]+)`")
_BODY_FIELD = re.compile(r"field `([^`]+)`")


def _field_of(key: object, message: str) -> object:
    """Name the failing field: msgspec reports a body error against the whole body ("data") and
    says which field in its message (`$.quantity`, "missing required field `sku`")."""
    if key == "data":
        found = _BODY_PATH.search(message) or _BODY_FIELD.search(message)
        if found:
            return found.group(1)
    return key


def _validation(exc: ValidationException) -> ProblemDetailsException:
    errors = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            message = str(item.get("message") or "")
            errors.append(
                {
                    "field": _field_of(item.get("key"), message),
                    "source": item.get("source"),
                    "message": message,
                }
            )
    extra: dict[str, Any] = {"errors": errors}
    if errors:
        extra["field"] = errors[0]["field"]
    return ProblemDetailsException(
        status_code=400,
        type_=PROBLEM_BASE + "invalid-request",
        title="Invalid request",
        detail=str(errors[0]["message"]) if errors and errors[0]["message"] else exc.detail,
        extra=extra,
    )


def _http(exc: HTTPException) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=exc.status_code,
        title=exc.detail,
        detail=exc.detail,
        headers=exc.headers,
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Any other error: logged by Litestar (log_exceptions="always"), answered without detail."""
    return problem(500, "internal", "Internal server error", "the error was logged").to_response(
        request
    )


EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    DomainError,
    ConcurrencyConflict,
    PreconditionFailed,
    SubjectErased,
    EventIdReused,
)
"""Answered as 4xx: logged in one line, without a stack trace."""


def _naming_the_request(handler: ExceptionHandler[Any]) -> ExceptionHandler[Any]:
    def answer(request: Request[Any, Any, Any], exc: Any) -> Response[Any]:
        response = handler(request, exc)
        urn = request_urn()
        if response.media_type == PROBLEM_MEDIA_TYPE and isinstance(response.content, dict) and urn:
            response.content.setdefault("instance", urn)
        return response

    return answer


class _Problems(ProblemDetailsPlugin):
    """Every problem names the request it answers: `instance` is `urn:request:<id>`, the id
    also sent in `X-Request-ID` and on every log line of the request, so a client's report
    leads to the logs. Done here, around every exception handler (this plugin's, any added
    later, and the fallback), rather than in each mapping."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config = super().on_app_init(app_config)
        app_config.exception_handlers = {
            kind: _naming_the_request(handler)
            for kind, handler in app_config.exception_handlers.items()
        }
        return app_config


def problem_details_plugin() -> ProblemDetailsPlugin:
    mapping: dict[type[Exception], Any] = {
        HTTPException: _http,
        ValidationException: _validation,
        DomainError: _domain,
        ConcurrencyConflict: _conflict,
        PreconditionFailed: _precondition,
        SubjectErased: _erased,
        EventIdReused: _reused,
        IntegrityViolation: _integrity,
    }
    return _Problems(ProblemDetailsConfig(exception_to_problem_detail_map=mapping))


def fallback_handlers() -> ExceptionHandlersMap:
    return {Exception: _unexpected}
