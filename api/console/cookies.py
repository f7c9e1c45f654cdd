"""Where the console lives and what its cookies are called: what the API's authentication needs
to know of the console, with nothing else of it imported."""

from __future__ import annotations

CONSOLE = "/console"
SESSION_COOKIE = "continuity_console"
"""The signed-in agent's or officer's bearer token: HttpOnly, SameSite=Strict, path /console."""
CSRF_COOKIE = "continuity_csrf"
"""Litestar's double-submit CSRF token, which every console form sends back as `_csrf_token`."""
OPEN_PATHS = (f"^{CONSOLE}/sign-(in|out)$", f"^{CONSOLE}/static/")
"""The console's paths served without signing in."""


def in_console(path: str) -> bool:
    return path == CONSOLE or path.startswith(CONSOLE + "/")
