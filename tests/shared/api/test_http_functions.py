"""Intake and admin are separate HTTP functions whose routes never overlap: each operation has exactly one.

Routing is the host's (emulated by scripts.functions_host from the same table function_app.py registers); the
apps are the ones each function forwards to, served by uvicorn.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Match

from scripts.functions_host import UnknownTemplate, decode_path, function_for, functions_for, parse_template
from shared.api.app import create_admin_api, create_api, create_intake_api
from shared.api.functions import ADMIN_FUNCTION, HTTP_FUNCTIONS, INTAKE_FUNCTION, NOT_INTAKE
from tests.support.server import ApiServer


def never_called() -> Any:
    raise AssertionError("a request reached a route handler in an app that should not have served it")


DOCUMENT = create_api(never_called).openapi()
DOCS = [("GET", "/api/docs"), ("GET", "/api/openapi.json")]
# Path values that look like the other function's literals, in other cases too.
VALUES = ["acme", "batches", "destinations", "Batches", "b-1"]


def operations() -> list[tuple[str, str, str]]:
    """(method, path, function whose key the document names) for every operation, with every path value."""
    found = []
    for template, methods in DOCUMENT["paths"].items():
        for method, operation in methods.items():
            key = next(iter(operation["security"][0])).removesuffix("_key")
            names = [part.split("}")[0] for part in template.split("{")[1:]]
            for values in itertools.product(VALUES, repeat=len(names)):
                path = template
                for name, value in zip(names, values, strict=True):
                    path = path.replace("{" + name + "}", value)
                found.append((method.upper(), path, key))
    return found + [(method, path, "admin") for method, path in DOCS]


OPERATIONS = operations()
APPS: dict[str, FastAPI] = {"intake": create_intake_api(never_called), "admin": create_admin_api(never_called)}


def serves(app: FastAPI, method: str, path: str) -> bool:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, httpx.Client]]:
    """Each function's app under uvicorn, with services that fail the test if any handler is reached."""
    with (ApiServer(APPS["intake"]) as intake, ApiServer(APPS["admin"]) as admin,
          httpx.Client(base_url=intake.base_url) as to_intake, httpx.Client(base_url=admin.base_url) as to_admin):
        yield {"intake": to_intake, "admin": to_admin}


def test_the_document_names_a_key_for_every_operation_and_the_intake_key_only_for_posting_batches() -> None:
    intake = [(m, p) for p, ops in DOCUMENT["paths"].items() for m, o in ops.items()
              if o["security"] == [{"intake_key": []}, {"intake_key_in_query": []}]]
    assert intake == [("post", "/api/destinations/{destination_id}/batches")]
    for operations_ in DOCUMENT["paths"].values():
        for operation in operations_.values():
            (scheme,), (in_query,) = operation["security"]
            function = scheme.removesuffix("_key")
            assert in_query == f"{function}_key_in_query"
            assert f"the `{function}` function's key" in operation["description"]
    schemes = DOCUMENT["components"]["securitySchemes"]
    header = {"type": "apiKey", "in": "header", "name": "x-functions-key"}
    query = {"type": "apiKey", "in": "query", "name": "code"}
    for function in ("intake", "admin"):
        assert schemes[f"{function}_key"].items() >= header.items()
        assert schemes[f"{function}_key_in_query"].items() >= query.items()
    assert "platform" in schemes["intake_key"]["description"]
    assert APPS["admin"].openapi() == DOCUMENT  # the admin function serves the whole API's document


@pytest.mark.parametrize(("method", "path", "function"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_each_operation_is_routed_to_exactly_one_function_whose_app_alone_serves_it(
    servers: dict[str, httpx.Client], method: str, path: str, function: str
) -> None:
    assert [f.name for f in functions_for(method, path)] == [function]  # in any load order: only one matches
    assert serves(APPS[function], method, path)
    other = "admin" if function == "intake" else "intake"
    assert not serves(APPS[other], method, path)
    response = servers[other].request(method, path)  # even a request the host would never send there
    assert response.status_code == 404, response.text
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found", "details": []}}


ROUTING = [
    ("POST", "/api/destinations/acme/batches", "intake"),
    ("POST", "/api/destinations/acme/batches/", "intake"),
    ("POST", "/API/Destinations/acme/BATCHES", "intake"),  # the host compares literals ignoring case...
    ("POST", "/api/destinations/a%2Fb/batches", "intake"),  # %2F stays encoded: still one segment
    ("POST", "/api/destinations/a%0Ab/batches", "intake"),  # (?s): a decoded newline cannot slip into admin
    ("POST", "/api/destinations/batches/batches", "intake"),
    ("GET", "/api/destinations/acme/batches", None),  # intake is POST only, and admin refuses the path
    ("PUT", "/API/DESTINATIONS/acme/Batches/", None),  # ...and so does the regex constraint
    ("POST", "/api/destinations/a/b/batches", None),
    ("POST", "/api/destinations//batches", "admin"),  # not an intake path (no id): admin's app answers 404
    ("PUT", "/api/destinations/batches", "admin"),
    ("POST", "/api/destinations/acme/test", "admin"),
    ("POST", "/api/destinations/acme/batches/x", "admin"),
    ("GET", "/api/batches", "admin"),
    ("GET", "/api/docs", "admin"),
    ("GET", "/api", None),  # an empty catch-all fails its constraint
    ("GET", "/other/destinations", None),
]


@pytest.mark.parametrize(("method", "path", "expected"), ROUTING)
def test_the_host_routing_emulation(method: str, path: str, expected: str | None) -> None:
    found = function_for(method, path)
    assert (found.name if found else None) == expected
    assert len(functions_for(method, path)) <= 1


def test_the_templates_are_what_the_host_accepts_and_does_not_call_conflicting() -> None:
    """The host refuses a function whose template equals another's (ignoring case and slashes) where methods
    intersect, and templates under its own admin/ and runtime/ routes. The regex avoids what a route template
    would read as its own syntax: braces and brackets (which would need doubling), and a ')' followed by ':'
    or '=' (which would end the constraint early)."""
    routes = [f.route.strip("/").lower() for f in HTTP_FUNCTIONS]
    assert len(set(routes)) == len(routes)
    assert not any(route.startswith(("admin", "runtime")) for route in routes)
    assert ADMIN_FUNCTION.route == "{*route:regex(" + NOT_INTAKE + ")}"
    assert not any(c in NOT_INTAKE for c in "{}[]") and "):" not in NOT_INTAKE and ")=" not in NOT_INTAKE
    assert NOT_INTAKE.startswith("(?s)^")  # the host asks whether it matches anywhere: anchored, or it always would
    assert parse_template(INTAKE_FUNCTION.route).segments == ("api", "destinations", None, "batches")


@pytest.mark.parametrize("route", ["{id}.json", "a/{*rest}/b", "items/{id:int}", "x/{id?}"])
def test_the_emulation_refuses_templates_it_does_not_understand(route: str) -> None:
    with pytest.raises(UnknownTemplate):
        parse_template(route)


def test_paths_are_decoded_as_aspnet_core_decodes_them() -> None:
    assert decode_path("/api/a%20b/c%2Fd/%2f") == "/api/a b/c%2Fd/%2f"
