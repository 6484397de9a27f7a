"""Error types with words for people. The API turns each into a JSON error response."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """A failure with an HTTP status, a stable code, a plain-words message and optional details.

    Messages and details must never contain a secret value.
    """

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(AppError):
    status = 422
    code = "validation_failed"


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"


class DestinationProblem(AppError):
    """The destination refused or could not be reached; the customer (or operator) must act.

    `retryable` is True when waiting may fix it (endpoint unreachable, throttling, 5xx).
    """

    status = 400
    code = "destination_error"

    def __init__(self, message: str, *, code: str, retryable: bool = False, status: int | None = None):
        super().__init__(message, code=code)
        self.retryable = retryable
        if status is not None:
            self.status = status
