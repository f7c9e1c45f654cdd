"""Signing in to the console with a bearer token, and out again.

The token (an agent's or compliance officer's, from `continuity token` or the identity
provider) is checked exactly as the API checks it, then kept in an HttpOnly, SameSite=Strict
cookie scoped to `/console` that expires with the token: page scripts never see it, other sites
cannot send it, and the API's routes never receive it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.params import Body
from litestar.response import Redirect, Template

from api.auth import ContinuityToken, Principal, principal_from_token
from api.console.cookies import CONSOLE, SESSION_COOKIE
from api.console.forms import SignIn
from api.console.security import SECURITY_HEADERS, secure_cookie
from api.issuers import Issuers
from continuity.runtime import Runtime

STAFF = frozenset({"agent", "compliance"})
HOME = {"agent": f"{CONSOLE}/queue", "compliance": f"{CONSOLE}/privacy"}


def _refused(status: int, message: str) -> Template:
    return Template(
        "sign_in.html",
        context={"error": message},
        status_code=status,
        headers=SECURITY_HEADERS,
    )


@get(f"{CONSOLE}/sign-in", include_in_schema=False)
async def sign_in_form() -> Template:
    return Template("sign_in.html", context={"error": None})


@post(f"{CONSOLE}/sign-in", include_in_schema=False)
async def sign_in(
    request: Request[Any, Any, Any],
    issuers: NamedDependency[Issuers],
    runtime: NamedDependency[Runtime],
    data: Annotated[SignIn, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[Any]:
    """A refused token re-shows the form with why, and sets nothing."""
    encoded = data.token.strip().removeprefix("Bearer ").strip()
    try:
        token = ContinuityToken.from_claims(await issuers.verify(encoded))
        principal = await principal_from_token(token, request)
    except NotAuthorizedException as exc:
        return _refused(401, f"That token was refused: {exc.detail}.")
    if principal.role not in STAFF:
        return _refused(403, "The console is for agents and compliance officers.")
    max_age = int((token.exp - datetime.now(UTC)).total_seconds())
    cookie = Cookie(
        key=SESSION_COOKIE,
        value=encoded,
        path=CONSOLE,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure_cookie(request, runtime.settings.console_secure_cookies),
    )
    return Redirect(HOME[principal.role], status_code=303, cookies=[cookie])


@post(f"{CONSOLE}/sign-out", include_in_schema=False)
async def sign_out() -> Response[Any]:
    gone = Cookie(key=SESSION_COOKIE, value="", path=CONSOLE, max_age=0, httponly=True)
    return Redirect(f"{CONSOLE}/sign-in", status_code=303, cookies=[gone])


@get(CONSOLE, include_in_schema=False)
async def home(request: Request[Principal, Any, Any]) -> Response[Any]:
    """Agents land on their queue, officers on the privacy page; anyone else is refused."""
    role = request.user.role
    if role not in STAFF:
        raise PermissionDeniedException("the console is for agents and compliance officers")
    return Redirect(HOME[role], status_code=303)
