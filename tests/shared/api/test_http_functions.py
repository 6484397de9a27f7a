"""Intake, admin and public are separate HTTP functions whose routes never overlap: each route has exactly one.

Routing is the host's (emulated by scripts.functions_host from the same table function_app.py registers); the
apps are the ones each function forwards to, served by uvicorn. The routes checked are every route each
function's app serves (documented or not: the docs page, the health probes, the console's page), so a route
added to a part is checked without touching this file.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Match, Route

from scripts.functions_host import UnknownTemplate, decode_path, function_for, functions_for, parse_template
from shared.api.app import create_api
from shared.api.functions import (
    ADMIN_FUNCTION,
    HTTP_FUNCTIONS,
    INTAKE_FUNCTION,
    NOT_INTAKE_OR_PUBLIC,
    ONLY_PUBLIC,
    PUBLIC_FUNCTION,
)
from tests.support.server import ApiServer


def never_called() -> Any:
    raise AssertionError("a request reached a route handler in an app that should not have served it")


DOCUMENT = create_api(never_called).openapi()
APPS: dict[str, FastAPI] = {function.name: function.create_app(never_called) for function in HTTP_FUNCTIONS}
# Path values that look like the other functions' literals, in other cases too.
VALUES = ["acme", "batches", "destinations", "Batches", "b-1", "health", "console"]


def with_values(template: str) -> list[str]:
    """The template with every combination of VALUES for its parameters."""
    names = re.findall(r"\{(\w+)(?::[^}]*)?\}", template)
    paths = []
    for values in itertools.product(VALUES, repeat=len(names)):
        path = template
        for name, value in zip(names, values, strict=True):
            path = re.sub(r"\{" + name + r"(?::[^}]*)?\}", value, path)
        paths.append(path)
    return paths


def operations() -> list[tuple[str, str, str]]:
    """(method, path, function) for every route each function's app serves, with every path value."""
    found = set()
    for name, app in APPS.items():
        for route in app.router.routes:
            if isinstance(route, Route):
                found |= {(method, path, name) for method in route.methods or () for path in with_values(route.path)}
    return sorted(found)


def documented() -> list[tuple[str, str, str]]:
    """(method, path, function) for every operation in the document: the function whose key it names, or the
    public function for an operation that needs no key (`security: []`)."""
    found = []
    for template, methods in DOCUMENT["paths"].items():
        for method, operation in methods.items():
            security = operation["security"]
            function = next(iter(security[0])).removesuffix("_key") if security else PUBLIC_FUNCTION.name
            found += [(method.upper(), path, function) for path in with_values(template)]
    return found


OPERATIONS = operations()


def serves(app: FastAPI, method: str, path: str) -> bool:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, httpx.Client]]:
    """Each function's app under uvicorn, with services that fail the test if any handler is reached."""
    with (ApiServer(APPS["intake"]) as intake, ApiServer(APPS["admin"]) as admin,
          ApiServer(APPS["public"]) as public,
          httpx.Client(base_url=intake.base_url) as to_intake, httpx.Client(base_url=admin.base_url) as to_admin,
          httpx.Client(base_url=public.base_url) as to_public):
        yield {"intake": to_intake, "admin": to_admin, "public": to_public}


def test_every_route_of_every_app_is_checked_the_probes_and_the_document_included() -> None:
    """The table below is built from the apps; this says it holds what it must."""
    assert {(m, p, f) for m, p, f in documented()} <= set(OPERATIONS)  # each documented operation, by its key
    assert ("GET", "/api/health", "public") in OPERATIONS
    assert ("GET", "/api/health/ready", "public") in OPERATIONS
    assert ("GET", "/api/docs", "admin") in OPERATIONS and ("GET", "/api/openapi.json", "admin") in OPERATIONS
    assert ("POST", "/api/destinations/acme/batches", "intake") in OPERATIONS


def test_the_document_names_a_key_for_every_operation_and_the_intake_key_only_for_posting_batches() -> None:
    intake = [(m, p) for p, ops in DOCUMENT["paths"].items() for m, o in ops.items()
              if o["security"] == [{"intake_key": []}, {"intake_key_in_query": []}]]
    assert intake == [("post", "/api/destinations/{destination_id}/batches")]
    for operations_ in DOCUMENT["paths"].values():
        for operation in operations_.values():
            if operation["security"] == []:  # a public operation: no key (none is documented today)
                continue
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
    for other in APPS.keys() - {function}:
        assert not serves(APPS[other], method, path)
        response = servers[other].request(method, path)  # even a request the host would never send there
        assert response.status_code == 404, (other, response.text)
        if method != "HEAD":  # (a HEAD answer has no body)
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
    ("GET", "/api/health", "public"),  # the probes and the console need no key
    ("HEAD", "/api/health/", "public"),
    ("GET", "/API/Health/READY", "public"),  # the public app answers 404: its routes are lower case
    ("POST", "/api/health/ready", "public"),  # (its app answers 405)
    ("GET", "/api/health%0A", "public"),  # `$` allows one final newline in both regexes: still one function
    ("GET", "/api/console", "public"),
    ("GET", "/api/console/", "public"),
    ("GET", "/api/console/assets/app.js", "public"),
    ("GET", "/api/console/a%0Ab", "public"),
    ("GET", "/api/health/other", "admin"),  # not a public path: the admin function, its key, its app's 404
    ("GET", "/api/health/ready/x", "admin"),
    ("GET", "/api/healthz", "admin"),
    ("GET", "/api/consoles", "admin"),
    ("GET", "/api/health%2Fready", "admin"),  # %2F stays encoded: not health/ready
    ("GET", "/api/x/health", "admin"),
    ("GET", "/api/destinations/console", "admin"),
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
    intersect, and templates under its own admin/ and runtime/ routes. The regexes avoid what a route template
    would read as its own syntax: braces and brackets (which would need doubling), and ':' or '=' (after which
    the constraint parser may take a ')' for its end)."""
    routes = [f.route.strip("/").lower() for f in HTTP_FUNCTIONS]
    assert len(set(routes)) == len(routes)
    assert not any(route.startswith(("admin", "runtime")) for route in routes)
    assert ADMIN_FUNCTION.route == "{*route:regex(" + NOT_INTAKE_OR_PUBLIC + ")}"
    assert PUBLIC_FUNCTION.route == "{*route:regex(" + ONLY_PUBLIC + ")}"
    for regex in (NOT_INTAKE_OR_PUBLIC, ONLY_PUBLIC):
        assert not any(c in regex for c in "{}[]:=")
        assert regex.startswith("(?s)^")  # the host asks whether it matches anywhere: anchored, or it always would
    assert parse_template(INTAKE_FUNCTION.route).segments == ("api", "destinations", None, "batches")


def test_only_the_public_function_is_anonymous() -> None:
    assert {f.name: f.auth_level for f in HTTP_FUNCTIONS} == {
        "intake": "function", "admin": "function", "public": "anonymous"}
    assert [f.name for f in HTTP_FUNCTIONS if f.local_key_setting is None] == ["public"]
    assert {(m, p) for m, p, f in OPERATIONS if f == "public"} >= {("GET", "/api/health"), ("GET", "/api/health/ready")}
    assert all(p.startswith(("/api/health", "/api/console")) for _, p, f in OPERATIONS if f == "public")


@pytest.mark.parametrize("route", ["{id}.json", "a/{*rest}/b", "items/{id:int}", "x/{id?}"])
def test_the_emulation_refuses_templates_it_does_not_understand(route: str) -> None:
    with pytest.raises(UnknownTemplate):
        parse_template(route)


def test_paths_are_decoded_as_aspnet_core_decodes_them() -> None:
    assert decode_path("/api/a%20b/c%2Fd/%2f") == "/api/a b/c%2Fd/%2f"


def test_with_local_keys_set_the_public_paths_still_need_no_key() -> None:
    """`make serve` with LOCAL_INTAKE_KEY and LOCAL_ADMIN_KEY: a probe and the console's page get through without
    a key, as in Azure; a key is not needed, whatever it is, and an admin path next to them still needs its own."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route as StarletteRoute

    from scripts.functions_host import FunctionKeyCheck

    async def reach(request: Any) -> PlainTextResponse:
        return PlainTextResponse("reached")

    reached = Starlette(routes=[StarletteRoute("/{path:path}", reach, methods=["GET", "POST"])])
    app = FunctionKeyCheck(reached, {"intake": "intake-k", "admin": "admin-k"})
    with ApiServer(app) as server, httpx.Client(base_url=server.base_url) as client:
        for path in ("/api/health", "/api/health/ready", "/api/console", "/api/console/app.js"):
            assert client.get(path).text == "reached", path
            assert client.get(path, headers={"x-functions-key": "wrong"}).text == "reached", path
        assert client.get("/api/health/other").status_code == 401
        assert client.get("/api/health/other", headers={"x-functions-key": "admin-k"}).text == "reached"
        assert client.post("/api/destinations/a/batches").status_code == 401
