"""The OpenAPI document and its docs page: what the document adds to FastAPI's, and Swagger UI served by the app.

The document adds: the one error shape on every operation; the answers' shapes (shared.api.schemas, named by
each route's `responses`); the request body's schemas as components, so the `auth` union's discriminator
mapping resolves; and which function key each operation needs. In Azure the API is served by two HTTP
functions, each with its own function key (see shared.api.functions); the document names, for every operation,
the key that opens it, and offers both ways the host accepts a key (security schemes `{function}_key` for the
`x-functions-key` header and `{function}_key_in_query` for `?code=`).

The docs page (/api/docs) is Swagger UI from the pinned `fastapi-offline` package's copy, served by the app
itself: nothing is fetched from another origin, so it works offline and in a locked-down network. In Azure the
page is opened as /api/docs?code=<admin key>: every request the page makes (its assets, the document) carries
that `code` on, since the host asks each of them for the key, and the page authorizes the admin operations
with it ("Authorize" takes the intake key, or another). The page does not print the key.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from shared.api.schemas import describe_parameter, request_schemas

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
                "code": {"type": "string", "minLength": 1, "description": "A stable code, such as `not_found`."},
                "message": {"type": "string", "minLength": 1, "description": "What went wrong, in words."},
                "details": {"type": "array", "items": {"type": "object"},
                            "description": "One entry per problem (a field, a line), where there are several."},
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
    def header_scheme(self) -> str:
        return f"{self.function}_key"

    @property
    def query_scheme(self) -> str:
        return f"{self.function}_key_in_query"

    @property
    def schemes(self) -> dict[str, dict[str, str]]:
        """Two security schemes for one key: the host reads the header first, then the query parameter."""
        words = f"The `{self.function}` function's key, held by {self.holder}"
        return {
            self.header_scheme: {"type": "apiKey", "in": "header", "name": KEY_HEADER,
                                 "description": f"{words}, in the `{KEY_HEADER}` header."},
            self.query_scheme: {"type": "apiKey", "in": "query", "name": KEY_QUERY,
                                "description": f"{words}, as `?{KEY_QUERY}=` instead of the header."},
        }

    @property
    def security(self) -> list[dict[str, list[str]]]:
        """An operation's `security`: either scheme (alternatives, not both)."""
        return [{name: []} for name in self.schemes]

    @property
    def sentence(self) -> str:
        return (f"**Key:** the `{self.function}` function's key (held by {self.holder}), in the `{KEY_HEADER}` "
                f"header or as `?{KEY_QUERY}=`. Another function's key is refused; a host key opens every function.")


Operation = tuple[str, str]  # (path, lower-case method) as the document lists it

ERROR_RESPONSE = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def document_api(api: FastAPI, keys: Mapping[Operation, FunctionKey]) -> None:
    """Finish the document FastAPI generates: the error shape on every operation, the request schemas as
    components, and each operation's key.

    FastAPI documents only its own 422 shape, which this API never sends (see install_error_handlers); any
    operation may answer 4xx/5xx, always as {"error": {...}}. An operation whose route declares its own
    `security` (`openapi_extra={"security": []}` for one the host serves without a key) keeps it.
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
        for name, schema in {**request_schemas(), "Error": ERROR_SCHEMA}.items():
            if schemas.setdefault(name, schema) is not schema:
                raise ValueError(f"two schemas named {name} in the OpenAPI document")
        schemes = components.setdefault("securitySchemes", {})
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                for parameter in operation.get("parameters", []):
                    describe_parameter(parameter)
                responses = operation["responses"]
                responses.pop("422", None)
                for status, response in responses.items():  # a 409 declared by a route, say
                    if status[0] in "45" and "content" not in response:
                        response.update(ERROR_RESPONSE)
                responses["4XX"] = {"description": "The request was refused; the message says why", **ERROR_RESPONSE}
                responses["5XX"] = {"description": "A dependency is unavailable (503) or an internal error",
                                    **ERROR_RESPONSE}
                if "security" in operation:
                    continue
                key = keys[(path, method)]
                schemes.update(key.schemes)
                operation["security"] = key.security
                operation["description"] = "\n\n".join(filter(None, [operation.get("description"), key.sentence]))
        api.openapi_schema = document
        return document

    api.openapi = openapi  # type: ignore[method-assign]


# --- The docs page ------------------------------------------------------------------------------------------

DOCS_PATH = "/api/docs"
SWAGGER_UI_PACKAGE = "fastapi_offline"  # requirements.txt pins it; its static/ holds Swagger UI 5's bundle


@dataclass(frozen=True)
class Asset:
    file: str  # in the package's static/ folder, or "" for one made here
    media_type: str


ASSETS = {
    "swagger-ui-bundle.js": Asset("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": Asset("swagger-ui.css", "text/css; charset=utf-8"),
    "favicon.png": Asset("favicon.png", "image/png"),
    "init.js": Asset("", "text/javascript; charset=utf-8"),
}

# Only the app's own origin: Swagger UI's bundle, its stylesheet, the document and "Try it out" calls. Its
# validator badge (another origin) is off in init.js.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'self'; "
               "frame-ancestors 'none'")

# Page and assets are addressed relative to /api/docs, so the page also works behind a gateway that serves
# the API under a prefix of its own.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title}</title>
<link rel="stylesheet" href="docs/swagger-ui.css{query}">
<link rel="icon" type="image/png" href="docs/favicon.png{query}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js{query}"></script>
<script src="docs/init.js{query}"></script>
</body>
</html>
"""

INIT = """(function () {
  "use strict";
  // In Azure the page is opened with ?code=<key>: the document is fetched with it (and handed to Swagger UI
  // as a spec, so the page does not print the key), and the operations of the function whose key opened the
  // page are authorized with it.
  var code = new URLSearchParams(window.location.search).get("code");
  var documentUrl = "openapi.json" + (code ? "?code=" + encodeURIComponent(code) : "");
  function show(message) {
    var box = document.getElementById("swagger-ui");
    box.textContent = message;
    box.setAttribute("role", "alert");
  }
  fetch(documentUrl, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
    .then(function (response) {
      if (!response.ok) {
        throw new Error("the OpenAPI document answered HTTP " + response.status +
                        (response.status === 401 ? ": open this page with ?code=<the admin function's key>" : ""));
      }
      return response.json();
    })
    .then(function (spec) {
      window.ui = SwaggerUIBundle({
        spec: spec,
        dom_id: "#swagger-ui",
        layout: "BaseLayout",
        deepLinking: true,
        displayOperationId: true,
        validatorUrl: null,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
        onComplete: function () {
          if (code) { window.ui.preauthorizeApiKey(PAGE_SCHEME, code); }
        }
      });
    })
    .catch(function (error) { show("The API description could not be loaded: " + error.message); });
})();
"""


@cache
def asset_bytes(name: str) -> bytes:
    """An asset's content, read from the installed package once."""
    return resources.files(SWAGGER_UI_PACKAGE).joinpath("static", ASSETS[name].file).read_bytes()


def add_docs_page(api: FastAPI, page_key: FunctionKey) -> None:
    """/api/docs (Swagger UI) and its assets under /api/docs/, served by the app; `page_key` is the function
    that serves the page in Azure, whose key in `?code=` authorizes its operations."""
    init = INIT.replace("PAGE_SCHEME", json.dumps(page_key.query_scheme)).encode()
    title = html.escape(f"{api.title}: API")

    def query(request: Request) -> str:
        """`?code=...` when the page was asked with it (URL-encoded, so it cannot leave the attribute)."""
        code = request.query_params.get(KEY_QUERY)
        return html.escape("?" + urlencode({KEY_QUERY: code})) if code else ""

    @api.get(DOCS_PATH, include_in_schema=False)
    async def docs_page(request: Request) -> Response:
        # The URL may hold a key: never cached, never sent on as a Referer.
        return HTMLResponse(PAGE.format(title=title, query=query(request)), headers={
            "Content-Security-Policy": PAGE_POLICY, "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        })

    def add_asset(name: str, asset: Asset) -> None:
        @api.get(f"{DOCS_PATH}/{name}", include_in_schema=False, name=f"docs asset {name}")
        async def docs_asset() -> Response:
            content = asset_bytes(name) if asset.file else init
            return Response(content, media_type=asset.media_type, headers={
                "Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer"})

    for name, asset in ASSETS.items():
        add_asset(name, asset)
