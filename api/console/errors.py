"""Errors on console pages, answered as pages: the same problem the API would answer (status,
title, detail), logged the same way, rendered for a person instead of a program.

A request that is not signed in (no cookie, or a token that expired or was refused) is sent to
the sign-in page: an htmx fragment request with `HX-Redirect`, since htmx would otherwise swap
a sign-in page into a fragment.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.response import Redirect, Template

from api.console.cookies import CONSOLE
from api.console.security import SECURITY_HEADERS
from api.problems import log_problem, to_problem

SIGN_IN = f"{CONSOLE}/sign-in"


def error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    problem = to_problem(request, exc)
    log_problem(request, exc, problem)
    headers = {**SECURITY_HEADERS, **(problem.headers or {})}
    headers.pop("WWW-Authenticate", None)
    if problem.status_code == 401:
        if request.headers.get("hx-request") == "true":
            return Response(None, status_code=401, headers={**headers, "HX-Redirect": SIGN_IN})
        return Redirect(SIGN_IN, status_code=303, headers=headers)
    return Template(
        "error.html",
        context={
            "status": problem.status_code,
            "title": problem.title,
            "detail": problem.detail,
            "signed_in": request.scope.get("user") is not None,
        },
        status_code=problem.status_code,
        headers=headers,
    )
