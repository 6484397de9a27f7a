"""What the OpenAPI document adds to FastAPI's: the one error shape, and which function key each operation needs.

In Azure the API is served by two HTTP functions, each with its own function key (see shared.api.functions);
the document names, for every operation, the key that opens it, and offers both ways the host accepts a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "minLength": 1},
                "message": {"type": "string", "minLength": 1},
                "details": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}


@dataclass(frozen=True)
class FunctionKey:
    """The key of one HTTP function in Azure, as the document and the docs name it."""

    function: str  # the function's name: `az functionapp function keys list ... --function-name <function>`
    holder: str  # who is given this key, in words

    @property
    def schemes(self) -> dict[str, dict[str, str]]:
        """Two security schemes for one key: the host reads the header first, then the query parameter."""
        words = f"The `{self.function}` function's key, held by {self.holder}"
        return {
            f"{self.function}_key": {"type": "apiKey", "in": "header", "name": KEY_HEADER,
                                     "description": f"{words}, in the `{KEY_HEADER}` header."},
            f"{self.function}_key_in_query": {"type": "apiKey", "in": "query", "name": KEY_QUERY,
                                              "description": f"{words}, as `?{KEY_QUERY}=` instead of the header."},
        }

    @property
    def sentence(self) -> str:
        return (f"**Key:** the `{self.function}` function's key (held by {self.holder}), in the `{KEY_HEADER}` "
                f"header or as `?{KEY_QUERY}=`. Another function's key is refused; a host key opens every function.")


Operation = tuple[str, str]  # (path, lower-case method) as the document lists it


def document_api(api: FastAPI, keys: Mapping[Operation, FunctionKey]) -> None:
    """Finish the document FastAPI generates: the error shape on every operation, and each operation's key.

    FastAPI documents only its own 422 shape, which this API never sends (see install_error_handlers); any
    operation may answer 4xx/5xx, always as {"error": {...}}.
    """
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        document = generate()
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        schemas["Error"] = ERROR_SCHEMA
        schemes = components.setdefault("securitySchemes", {})
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                responses = operation["responses"]
                responses.pop("422", None)
                responses["4XX"] = {"description": "The request was refused; the message says why", **error}
                responses["5XX"] = {"description": "A dependency is unavailable (503) or an internal error", **error}
                key = keys[(path, method)]
                schemes.update(key.schemes)
                operation["security"] = [{name: []} for name in key.schemes]
                operation["description"] = "\n\n".join(filter(None, [operation.get("description"), key.sentence]))
        return document

    api.openapi = openapi  # type: ignore[method-assign]
