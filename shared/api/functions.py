"""The HTTP functions Azure sees, and so which function key opens what: intake for the platform, public for
anyone (no key), admin for the rest.

Each keyed function has its own key: the platform that posts batches is given only the intake function's key,
so it cannot create, read or delete destinations; the admin function's key stays with the operator. Both are
at auth level FUNCTION (function_app.py); a host key opens every function and is never given out. The public
function is at auth level ANONYMOUS and serves only /api/health, /api/health/ready and what is under
/api/console (the console's page and assets): probes and browsers reach them without a key.

Why the admin route excludes the intake and public paths itself: the Functions host does not rank route
templates by how specific they are (ASP.NET Core's precedence). It adds each function's template to a legacy
ASP.NET Core `RouteCollection` (Microsoft.Azure.WebJobs.Extensions.Http's WebJobsRouteBuilder) and the first
template that matches wins, in the order the functions were loaded (Azure/azure-functions-host#9876, #3153). A
bare catch-all could therefore take every batch post. The catch-all carries an inline `regex` constraint
(ASP.NET Core route syntax; the host resolves it with DefaultInlineConstraintResolver and matches it
case-insensitively against the rest of the path) that refuses every path the intake template accepts (and
deeper ones such as destinations/a/b/batches, which no operation has) and every path the public function's
constraint accepts (the same regex, PUBLIC_PATHS, negated), so no path matches two templates whatever the
order. The regexes avoid `{ } [ ]`, which a route template would need doubled, and `:` and `=`, after which a
`)` may end the constraint early. Behind that, no function's app holds another's routes (shared.api.app), so a
request that reached the wrong function would find only a 404.

`make serve` emulates the host's routing and key check from this table (scripts.functions_host), and the tests
check it against every route each function's app serves and every operation in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from azure.functions import HttpMethod
from fastapi import FastAPI

from shared.api.app import ADMIN, INTAKE, PUBLIC, ApiPart, create_admin_api, create_intake_api, create_public_api
from shared.api.responses import ServicesProvider

ROUTE_PREFIX = "api"  # host.json http.routePrefix (the default): every function route is under /api/
ALL_METHODS = tuple(method.value for method in HttpMethod)  # what AsgiFunctionApp's catch-all accepted

# `(?s)` lets `.` match any character; `^` anchors each regex (the host asks "does it match anywhere").
INTAKE_PATHS = "destinations/.+/batches/?$"  # the intake template's paths, and deeper ones (for the lookahead)
PUBLIC_PATHS = "(health(/ready)?|console(/.*)?)/?$"  # the probes, and the console's page and assets
ONLY_PUBLIC = "(?s)^" + PUBLIC_PATHS
NOT_INTAKE_OR_PUBLIC = "(?s)^(?!" + INTAKE_PATHS + ")(?!" + PUBLIC_PATHS + ")"


@dataclass(frozen=True)
class HttpFunction:
    """One HTTP function: its route template under /api/, its methods, the app it forwards to, its key."""

    part: ApiPart  # the operations it serves, and the key that opens them (shared.api.app)
    route: str  # an ASP.NET Core route template, as the host reads it
    methods: tuple[str, ...]
    create_app: Callable[[ServicesProvider], FastAPI]
    local_key_setting: str | None  # the Settings field standing in for its key under `make serve`; None: no key

    @property
    def name(self) -> str:
        return self.part.key.function

    @property
    def auth_level(self) -> str:
        """The trigger's auth level, as azure.functions.AuthLevel names it."""
        return "anonymous" if self.part.anonymous else "function"


INTAKE_FUNCTION = HttpFunction(
    part=INTAKE, route="destinations/{destination_id}/batches", methods=("POST",),
    create_app=create_intake_api, local_key_setting="local_intake_key",
)
ADMIN_FUNCTION = HttpFunction(
    part=ADMIN, route="{*route:regex(" + NOT_INTAKE_OR_PUBLIC + ")}", methods=ALL_METHODS,
    create_app=create_admin_api, local_key_setting="local_admin_key",
)
# Every method, as admin: its app answers what it has a route for (405 otherwise), so a console route is one line.
PUBLIC_FUNCTION = HttpFunction(
    part=PUBLIC, route="{*route:regex(" + ONLY_PUBLIC + ")}", methods=ALL_METHODS,
    create_app=create_public_api, local_key_setting=None,
)
HTTP_FUNCTIONS = (INTAKE_FUNCTION, ADMIN_FUNCTION, PUBLIC_FUNCTION)
