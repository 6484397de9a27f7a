"""The HTTP API (FastAPI). Each route parses input, calls one plain function, and shapes the answer.

It has three parts, each served in Azure by its own HTTP function (shared.api.functions): INTAKE, posting
batches (the platform's key), ADMIN, everything else (the operator's key), and PUBLIC, what needs no key (the
health probes, and the console's page and assets under /api/console). `create_api` serves them all in one
app, with one OpenAPI document that names each operation's key (`security: []` for a public one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute

from shared.api.batch_routes import add_batch_routes
from shared.api.console_routes import add_console_routes
from shared.api.destination_routes import add_destination_routes
from shared.api.docs import FunctionKey, Operation, add_docs_page, document_api
from shared.api.export_routes import add_export_routes
from shared.api.health_routes import add_health_routes
from shared.api.intake_routes import add_intake_routes
from shared.api.responses import ServicesProvider, install_error_handlers

TAGS = [
    {"name": "destinations", "description": "Where batches land: a customer's container and the credentials for it."},
    {"name": "batches", "description": "Records posted by the platform, staged, then exported by a pass."},
    {"name": "exports", "description": "Export passes: the timer runs them; run one now."},
]


def new_app(*, docs: bool) -> FastAPI:
    """An app with the error handlers; with `docs`, the OpenAPI document and the docs page (Swagger UI served
    from the app: shared.api.docs), whose `?code=` is the admin function's key in Azure."""
    api = FastAPI(
        title="Azure Blob export",
        version="1.0.0",
        description="Exports analytics events and profiles into customers' Azure Blob Storage containers.",
        openapi_tags=TAGS,
        docs_url=None,
        openapi_url="/api/openapi.json" if docs else None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry (on once a provider is configured) is off: it records `?code=` function keys
        # in `url.query` and lets a failing metrics plug-in fail the request. The app's spans: shared.telemetry.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(api)
    if docs:
        add_docs_page(api, ADMIN.key)
    return api


def add_part(api: FastAPI, part: ApiPart, services: ServicesProvider) -> dict[Operation, FunctionKey]:
    """Add a part's routes; return its operations, each with the key that opens it. An anonymous part's
    operations need no key: the document says so on each (`security: []`) and none is returned."""
    start = len(api.routes)
    for add_routes in part.add_routes:
        add_routes(api, services)
    routes = [route for route in api.routes[start:] if isinstance(route, APIRoute)]
    if part.anonymous:
        for route in routes:
            route.openapi_extra = {**(route.openapi_extra or {}), "security": []}
        return {}
    return {(route.path, method.lower()): part.key for route in routes for method in route.methods or ()}


def create_api(services: ServicesProvider) -> FastAPI:
    """The whole API in one app with one OpenAPI document: `make serve`, the demo and the tests serve it, and
    the admin function serves its document."""
    api = new_app(docs=True)
    keys: dict[Operation, FunctionKey] = {}
    for part in API_PARTS:
        keys |= add_part(api, part, services)
    document_api(api, keys)
    return api


def create_intake_api(services: ServicesProvider) -> FastAPI:
    """What the intake function serves: posting batches, nothing else (no docs: the admin function has them)."""
    api = new_app(docs=False)
    add_part(api, INTAKE, services)
    return api


def create_admin_api(services: ServicesProvider) -> FastAPI:
    """What the admin function serves: every operation but posting batches, and the whole API's document."""
    api = new_app(docs=True)
    add_part(api, ADMIN, services)
    api.openapi = create_api(services).openapi  # type: ignore[method-assign]
    return api


def create_public_api(services: ServicesProvider) -> FastAPI:
    """What the public function serves, with no key: the health probes and the console's page and assets."""
    api = new_app(docs=False)
    add_part(api, PUBLIC, services)
    return api


@dataclass(frozen=True)
class ApiPart:
    """The operations one HTTP function serves in Azure: its function key opens these and nothing else."""

    key: FunctionKey  # names the function; an anonymous part's function has no key
    add_routes: tuple[Callable[[FastAPI, ServicesProvider], None], ...]
    anonymous: bool = False  # the host asks for no key (auth level ANONYMOUS): anyone may call these


# The platform that posts batches holds only the intake key; destinations and batches are administered
# with the admin key. shared.api.functions gives each part its route in Azure.
INTAKE = ApiPart(FunctionKey("intake", "the platform that posts batches"), (add_intake_routes,))
ADMIN = ApiPart(FunctionKey("admin", "the operator who administers destinations and batches"),
                (add_destination_routes, add_batch_routes, add_export_routes))
# Probes and browsers call these without a key. Its routes live under /api/health and /api/console (the public
# function's route takes those paths and no other: shared.api.functions), so adding one here is all it takes.
PUBLIC = ApiPart(FunctionKey("public", "nobody: it needs no key"), (add_health_routes, add_console_routes),
                anonymous=True)
API_PARTS = (INTAKE, ADMIN, PUBLIC)
