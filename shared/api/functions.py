"""The HTTP functions Azure sees, and so which function key opens what: intake for the platform, admin for the rest.

Each function has its own key: the platform that posts batches is given only the intake function's key, so it
cannot create, read or delete destinations; the admin function's key stays with the operator. Both functions
are at auth level FUNCTION (function_app.py); a host key opens every function and is never given out.

Why the admin route excludes the intake path itself: the Functions host does not rank route templates by how
specific they are (ASP.NET Core's precedence). It adds each function's template to a legacy ASP.NET Core
`RouteCollection` (Microsoft.Azure.WebJobs.Extensions.Http's WebJobsRouteBuilder) and the first template that
matches wins, in the order the functions were loaded (Azure/azure-functions-host#9876, #3153). A bare catch-all
could therefore take every batch post. The catch-all carries an inline `regex` constraint (ASP.NET Core route
syntax; the host resolves it with DefaultInlineConstraintResolver and matches it case-insensitively against the
rest of the path) that refuses every path the intake template accepts (and deeper ones such as
destinations/a/b/batches, which no operation has), so no path matches both templates whatever the order.
The regex avoids `{ } [ ]`, which a route template would need doubled. Behind that, neither function's app
holds the other's routes (shared.api.app), so a request that reached the wrong function would find only a 404.

`make serve` emulates the host's routing and key check from this table (scripts.functions_host), and the tests
check it against every operation in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from azure.functions import HttpMethod
from fastapi import FastAPI

from shared.api.app import ADMIN, INTAKE, ApiPart, create_admin_api, create_intake_api
from shared.api.responses import ServicesProvider

ROUTE_PREFIX = "api"  # host.json http.routePrefix (the default): every function route is under /api/
ALL_METHODS = tuple(method.value for method in HttpMethod)  # what AsgiFunctionApp's catch-all accepted

# `(?s)` lets `.` match any character; `^` anchors the lookahead (the host asks "does it match anywhere").
NOT_INTAKE = "(?s)^(?!destinations/.+/batches/?$)"


@dataclass(frozen=True)
class HttpFunction:
    """One HTTP function: its route template under /api/, its methods, the app it forwards to, its key."""

    part: ApiPart  # the operations it serves, and the key that opens them (shared.api.app)
    route: str  # an ASP.NET Core route template, as the host reads it
    methods: tuple[str, ...]
    create_app: Callable[[ServicesProvider], FastAPI]
    local_key_setting: str  # the Settings field that stands in for this function's key under `make serve`

    @property
    def name(self) -> str:
        return self.part.key.function


INTAKE_FUNCTION = HttpFunction(
    part=INTAKE, route="destinations/{destination_id}/batches", methods=("POST",),
    create_app=create_intake_api, local_key_setting="local_intake_key",
)
ADMIN_FUNCTION = HttpFunction(
    part=ADMIN, route="{*route:regex(" + NOT_INTAKE + ")}", methods=ALL_METHODS,
    create_app=create_admin_api, local_key_setting="local_admin_key",
)
HTTP_FUNCTIONS = (INTAKE_FUNCTION, ADMIN_FUNCTION)
