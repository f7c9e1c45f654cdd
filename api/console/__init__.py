"""The console (`/console`): server-rendered pages for agents and compliance officers.

Pages are Jinja templates rendered by the same Litestar app over the same services as the API,
kept live by htmx fragments that the pages fetch again when a console event stream says
something changed. Sign-in puts the caller's bearer token in an HttpOnly, SameSite=Strict
cookie scoped to `/console`; every form carries a CSRF token; every page is sent with a
Content-Security-Policy that allows only this app's own scripts and styles.
"""
