"""What every route shares: the services provider, JSON answers, the error handlers that turn each
exception type into `{"error": {"code", "message", "details"}}`, and reading a JSON body."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.destinations.models import validation_details
from shared.errors import AppError, BadRequest, PayloadTooLarge, ValidationFailed
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

# Routes get the process's services through this, on each request (building them does I/O).
ServicesProvider = Callable[[], "Services"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


MAX_PAGE = 1000


def check_page_limit(limit: int) -> int:
    """A listing's `limit`: 1 to 1000 items a page."""
    if not 1 <= limit <= MAX_PAGE:
        message = f"must be between 1 and {MAX_PAGE}"
        raise ValidationFailed(f"limit {message}", details=[{"field": "limit", "message": message}])
    return limit


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

    api.add_middleware(UnexpectedErrorsAsJson)


class UnexpectedErrorsAsJson:
    """The answer to an exception no handler took: the JSON 500, logged with its traceback, never re-raised.

    Not an `exception_handler(Exception)`: Starlette runs that one in its outermost middleware and then
    re-raises the exception. Under uvicorn the answer is already sent; behind the Functions adapter
    (`azure.functions.AsgiMiddleware`) the re-raise reaches the host, which replaces the answer with its own
    bodiless 500. This middleware sits inside Starlette's and keeps the exception from it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            log.error("unhandled error on %s %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__,
                      exc_info=exc)
            if not started:  # once an answer has begun, the client can only see the connection end
                answer = error_response(500, "internal_error", "an internal error occurred; it has been logged")
                await answer(scope, receive, send)


MAX_JSON_BODY_BYTES = 1024 * 1024  # a destination is a few hundred bytes; a body past 1 MiB is refused unread


async def read_json_body(request: Request) -> Any:
    """The request's JSON value. Refused with 413 past 1 MiB, counted as it arrives (a Content-Length can
    be absent or wrong): a large body of nested arrays would cost gigabytes parsed. Parsed in a worker thread
    (1 MiB of `[[],[],...]` is still half a million lists): other requests do not wait for it."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BODY_BYTES:
            raise PayloadTooLarge(f"the request body is larger than the limit of {MAX_JSON_BODY_BYTES} bytes")
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return await run_in_threadpool(orjson.loads, raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
