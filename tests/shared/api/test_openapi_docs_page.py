"""The docs page (/api/docs) without a browser: Swagger UI's assets come from the pinned package and the app
itself, the page carries `?code=` on safely, and in Azure the admin function serves all of it.
(tests/browser/test_docs_page.py renders it in Chromium.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import httpx
import pytest

from scripts.functions_host import functions_for
from shared.api.app import ADMIN, create_api, create_intake_api
from shared.api.docs import ASSETS, DOCS_PATH, SWAGGER_UI_PACKAGE
from tests.support.server import ApiServer

DOCUMENT = create_api(lambda: None).openapi()  # type: ignore[arg-type, return-value]
PAGE_PATHS = [DOCS_PATH, *(f"{DOCS_PATH}/{name}" for name in ASSETS)]


def never_called() -> Any:
    raise AssertionError("the docs page and its assets need no services")


@pytest.fixture(scope="module")
def docs() -> Iterator[httpx.Client]:
    with ApiServer(create_api(never_called)) as server, httpx.Client(base_url=server.base_url) as client:
        yield client


def test_swagger_ui_is_the_pinned_packages_copy_of_swagger_ui_5(docs: httpx.Client) -> None:
    for name, asset in ASSETS.items():
        answer = docs.get(f"{DOCS_PATH}/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"] == asset.media_type
        if asset.file:
            package = resources.files(SWAGGER_UI_PACKAGE).joinpath("static", asset.file).read_bytes()
            assert answer.content == package
    bundle = docs.get(f"{DOCS_PATH}/swagger-ui-bundle.js").text
    assert 'PACKAGE_VERSION:"5.' in bundle  # Swagger UI 5 reads OpenAPI 3.1 (4 does not)
    assert docs.get(f"{DOCS_PATH}/other.js").status_code == 404


def test_the_page_names_only_its_own_assets_and_keeps_the_key_out_of_caches_and_referers(docs: httpx.Client) -> None:
    page = docs.get(DOCS_PATH)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http" not in page.text.replace("http-equiv", "")  # every address is relative: the app's own
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "init.js", "favicon.png"):
        assert f'"docs/{name}"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"


def test_the_key_in_code_is_carried_on_url_encoded_so_it_cannot_leave_its_attribute(docs: httpx.Client) -> None:
    assert 'src="docs/init.js?code=k-1"' in docs.get(DOCS_PATH, params={"code": "k-1"}).text
    hostile = '"><script>alert(1)</script>&x=\'y'
    page = docs.get(DOCS_PATH, params={"code": hostile}).text
    assert "<script>alert" not in page and "alert(1)" not in page and "'y" not in page
    assert page.count("?code=%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E%26x%3D%27y") == 4


def test_the_page_authorizes_the_admin_operations_with_its_key(docs: httpx.Client) -> None:
    init = docs.get(f"{DOCS_PATH}/init.js").text
    scheme = ADMIN.key.query_scheme
    assert f"preauthorizeApiKey({json.dumps(scheme)}, code)" in init and "validatorUrl: null" in init
    assert DOCUMENT["components"]["securitySchemes"][scheme] == {
        **DOCUMENT["components"]["securitySchemes"][scheme], "in": "query", "name": "code"}


@pytest.mark.parametrize("path", PAGE_PATHS)
def test_in_azure_the_admin_function_alone_serves_the_page_and_its_assets(path: str) -> None:
    assert [function.name for function in functions_for("GET", path)] == ["admin"]
    intake = create_intake_api(never_called)
    assert not any(getattr(route, "path", None) == path for route in intake.routes)
