"""`Allow` on OPTIONS lists every method of the path.

Litestar adds an OPTIONS handler to each route, answering 204 with `Allow` built from the
route's methods. A controller registers its handlers one at a time, and when a second method
joins a path (PATCH, then DELETE on `/v1/me/cart/items/{sku}`) the route is rebuilt with the
first route's OPTIONS handler, whose `Allow` still names only the first method (found by
Schemathesis). `complete_allow` gives each such route a fresh OPTIONS handler of its own.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.routes import HTTPRoute

_GENERATED = "options_handler"
"""The name of the function Litestar's generated OPTIONS handlers wrap."""


def complete_allow(app: Litestar) -> None:
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or "OPTIONS" not in route.route_handler_map:
            continue
        stale, _ = route.route_handler_map["OPTIONS"]
        if getattr(stale.fn, "__name__", None) != _GENERATED:
            continue
        fresh = route.create_options_handler(route.path)
        fresh.owner = stale.owner
        fresh.on_registration(app)
        route.route_handlers = [fresh if h is stale else h for h in route.route_handlers]
        route.route_handler_map["OPTIONS"] = (
            fresh,
            fresh.create_kwargs_model(path_parameters=route.path_parameters),
        )
