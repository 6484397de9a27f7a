"""The HTTP API (FastAPI). Each route parses input, calls one plain function, and shapes the answer.

It has two parts, each served in Azure by its own HTTP function with its own key (shared.api.functions):
INTAKE, posting batches (the platform's), and ADMIN, everything else (the operator's). `create_api` serves
both in one app, with one OpenAPI document that names each operation's key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.api.docs import FunctionKey, Operation, document_api
from shared.control import batches
from shared.destinations.models import DestinationIn, validation_details
from shared.errors import AppError, BadRequest, ValidationFailed
from shared.export.runner import run_export_pass
from shared.intake.accept import IntakeRequest, accept_batch, accepted_body, read_limited
from shared.secrets.store import (
    SecretAccessDeniedError,
    SecretNameInUseError,
    SecretNotFoundError,
    SecretStoreError,
    SecretStoreUnavailableError,
)
from shared.settings import SettingsError

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.services import Services

log = logging.getLogger(__name__)

ServicesProvider = Callable[[], "Services"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, code: str, message: str, details: list[Any] | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message, "details": details or []}}, status)


_SECRET_STORE_ERRORS: dict[type[SecretStoreError], tuple[int, str]] = {
    SecretStoreUnavailableError: (503, "secret_store_unavailable"),
    SecretAccessDeniedError: (503, "secret_store_access_denied"),  # the app's identity: an operator must act
    SecretNotFoundError: (404, "secret_not_found"),
    SecretNameInUseError: (409, "secret_name_in_use"),
}


def install_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> Response:
        return json_response(exc.to_body(), exc.status)

    @api.exception_handler(SettingsError)
    async def _settings(_: Request, exc: SettingsError) -> Response:
        log.error("%s", exc)
        return error_response(503, "misconfigured", f"the app is misconfigured: {exc}")

    @api.exception_handler(SecretStoreError)
    async def _secret_store(_: Request, exc: SecretStoreError) -> Response:
        # The message is plain words and never holds a secret value (see shared.secrets.store).
        status, code = _SECRET_STORE_ERRORS.get(type(exc), (502, "secret_store_error"))
        return error_response(status, code, str(exc))

    @api.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        details = validation_details(list(exc.errors()))
        return error_response(422, "validation_failed", "the request is invalid", details)

    @api.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return error_response(500, "internal_error", "an internal error occurred; it has been logged")


async def read_json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic schema with its $defs inlined, so it stands alone inside the OpenAPI document."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(dict(defs[ref.split("/")[-1]]))
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return dict(resolve(schema))


DESTINATION_EXAMPLE = {"account_name": "mystorageaccount", "container": "analytics-export", "prefix": "clevertap/",
                       "format": "jsonl", "compression": "gzip", "auth": {"type": "managed_identity"}}
DESTINATION_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_refs(DestinationIn.model_json_schema()),
                                         "example": DESTINATION_EXAMPLE}},
    }
}


def new_app(*, docs: bool) -> FastAPI:
    api = FastAPI(
        title="Azure Blob export",
        version="1.0.0",
        description="Exports analytics events and profiles into customers' Azure Blob Storage containers.",
        docs_url="/api/docs" if docs else None,
        openapi_url="/api/openapi.json" if docs else None,
        redoc_url=None,
    )
    install_error_handlers(api)
    return api


def add_part(api: FastAPI, part: ApiPart, services: ServicesProvider) -> dict[Operation, FunctionKey]:
    """Add a part's routes; return its operations, each with the key that opens it."""
    start = len(api.routes)
    for add_routes in part.add_routes:
        add_routes(api, services)
    return {(route.path, method.lower()): part.key
            for route in api.routes[start:] if isinstance(route, APIRoute) for method in route.methods or ()}


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


def add_destination_routes(api: FastAPI, services: ServicesProvider) -> None:
    @api.put("/api/destinations/{destination_id}", openapi_extra=DESTINATION_BODY, tags=["destinations"],
             responses={201: {"description": "Created"}})
    async def put_destination(destination_id: str, request: Request, verify: bool = True) -> Response:
        """Create or replace a destination. Unless `verify=false`, the credentials are first proven by
        writing, reading back and deleting a probe blob; a destination that fails is not saved."""
        body = await read_json_body(request)
        svc = services()
        result = await run_in_threadpool(svc.destinations.put, destination_id, body, verify=verify)
        if result.credentials_changed and svc.on_credentials_changed is not None:
            await run_in_threadpool(svc.on_credentials_changed, destination_id)
        return json_response(result.view, 201 if result.created else 200)

    @api.get("/api/destinations/{destination_id}", tags=["destinations"])
    async def get_destination(destination_id: str) -> Response:
        return json_response(await run_in_threadpool(services().destinations.get, destination_id))

    @api.get("/api/destinations", tags=["destinations"])
    async def list_destinations() -> Response:
        return json_response({"destinations": await run_in_threadpool(services().destinations.list)})

    @api.delete("/api/destinations/{destination_id}", tags=["destinations"], status_code=204)
    async def delete_destination(destination_id: str) -> Response:
        await run_in_threadpool(services().destinations.delete, destination_id)
        return Response(status_code=204)

    @api.post("/api/destinations/{destination_id}/test", tags=["destinations"])
    async def test_destination(destination_id: str) -> Response:
        return json_response(await run_in_threadpool(services().test_destination, destination_id))


# A record that is both a valid event (name, time) and a valid profile (identity).
INTAKE_EXAMPLE_RECORD = {"event": "purchase", "timestamp": "2026-11-20T09:15:00Z", "distinct_id": "u-1",
                         "properties": {"amount": 19.99, "currency": "EUR"}}
INTAKE_EXAMPLE_NDJSON = orjson.dumps(INTAKE_EXAMPLE_RECORD).decode() + "\n"
INTAKE_BODY = {
    "parameters": [
        {"name": "type", "in": "query", "required": True,
         "schema": {"type": "string", "enum": ["events", "profiles"]}},
        {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-ndjson": {"schema": {"type": "string"}, "example": INTAKE_EXAMPLE_NDJSON},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}},
                                 "example": [INTAKE_EXAMPLE_RECORD]},
        },
    },
}


def add_intake_routes(api: FastAPI, services: ServicesProvider) -> None:
    @api.post("/api/destinations/{destination_id}/batches", openapi_extra=INTAKE_BODY, status_code=202,
              tags=["batches"])
    async def post_batch(destination_id: str, request: Request) -> Response:
        svc = services()
        destination = await run_in_threadpool(svc.destinations.get_record, destination_id)
        raw = await read_limited(request.stream(), svc.settings.max_request_bytes)
        intake = IntakeRequest(
            destination_id=destination_id,
            record_type=request.query_params.get("type", ""),
            content_type=request.headers.get("content-type"),
            content_encoding=request.headers.get("content-encoding"),
            idempotency_key=request.headers.get("idempotency-key"),
        )
        state, created = await run_in_threadpool(
            accept_batch, svc.control, intake, raw, max_bytes=svc.settings.max_request_bytes,
            csv_destination=destination["format"] == "csv",
        )
        headers = {"Location": f"/api/batches/{state['batch_id']}"}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return json_response(accepted_body(state), 202, headers)


def add_batch_routes(api: FastAPI, services: ServicesProvider) -> None:
    @api.get("/api/batches/{batch_id}", tags=["batches"])
    async def get_batch(batch_id: str) -> Response:
        state = await run_in_threadpool(batches.get_state, services().control, batch_id)
        return json_response(batches.public_status(state))

    @api.get("/api/batches", tags=["batches"])
    async def list_batches(state: str | None = None, destination_id: str | None = None, limit: int = 100,
                           next: str | None = None) -> Response:
        if not 1 <= limit <= 1000:
            raise ValidationFailed("limit must be between 1 and 1000",
                                   details=[{"field": "limit", "message": "must be between 1 and 1000"}])
        page = await run_in_threadpool(
            batches.list_batches, services().control, state=state, destination_id=destination_id, limit=limit,
            continuation=next,
        )
        return json_response(page)

    @api.post("/api/batches/{batch_id}/retry", tags=["batches"])
    async def retry_batch(batch_id: str) -> Response:
        state = await run_in_threadpool(
            batches.make_due_now, services().control, batch_id, reason="retry requested"
        )
        return json_response(batches.public_status(state))

    @api.post("/api/exports/run", tags=["exports"])
    async def run_now() -> Response:
        summary = await run_in_threadpool(run_export_pass, services())
        return json_response(summary.to_json())


@dataclass(frozen=True)
class ApiPart:
    """The operations one HTTP function serves in Azure: its function key opens these and nothing else."""

    key: FunctionKey
    add_routes: tuple[Callable[[FastAPI, ServicesProvider], None], ...]


# The platform that posts batches holds only the intake key; destinations and batches are administered
# with the admin key. shared.api.functions gives each part its route in Azure.
INTAKE = ApiPart(FunctionKey("intake", "the platform that posts batches"), (add_intake_routes,))
ADMIN = ApiPart(FunctionKey("admin", "the operator who administers destinations and batches"),
                (add_destination_routes, add_batch_routes))
API_PARTS = (INTAKE, ADMIN)
