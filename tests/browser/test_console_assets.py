"""The console's page and assets over HTTP, without a browser: served by the public function with no key (the
API behind it still asks for the admin key), each with its content type, a strict policy on the page, assets
under the build's digest cached as immutable and revalidated by ETag, nothing served but the listed files, and
no asset that could turn text into markup or keep the key beyond the tab."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import httpx
import pytest

from scripts.functions_host import FunctionKeyCheck, function_for
from shared.api.app import create_api
from shared.api.console_routes import ASSETS, CONSOLE_PATH, console_build
from tests.support.server import ApiServer

ADMIN_KEY = "admin-key-for-the-console-assets"


def never_called() -> Any:
    raise AssertionError("the console's page and assets need no services")


@pytest.fixture(scope="module")
def site() -> Iterator[httpx.Client]:
    """The whole app behind the host's key check, as in Azure: the console's paths reach the public function."""
    app = FunctionKeyCheck(create_api(never_called), {"admin": ADMIN_KEY, "intake": "intake-key-for-the-assets"})
    with ApiServer(app) as server, httpx.Client(base_url=server.base_url) as client:
        yield client


def asset_path(name: str, build: str | None = None) -> str:
    return f"{CONSOLE_PATH}/{build or console_build()[0]}/{name}"


def test_the_public_function_serves_the_page_and_its_assets_with_no_key_and_the_api_still_asks_for_one(
    site: httpx.Client,
) -> None:
    for path in [CONSOLE_PATH, *(asset_path(name) for name in ASSETS)]:
        function = function_for("GET", path)
        assert function is not None and function.name == "public", path
        assert function.auth_level == "anonymous"
        assert site.get(path).status_code == 200, path
    assert site.get("/api/destinations").status_code == 401


def test_the_page_has_a_strict_policy_and_names_only_its_own_assets(site: httpx.Client) -> None:
    page = site.get(CONSOLE_PATH)
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    assert policy["require-trusted-types-for"] == "'script'" and policy["trusted-types"] == "'none'"
    assert "unsafe" not in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-cache"
    assert "<script>" not in page.text and " style=" not in page.text and " on" not in page.text.replace(" only", "")
    build = console_build()[0]
    linked = set(re.findall(r'(?:src|href)="([^"#]+)"', page.text))
    assert linked == {f"console/{build}/{name}" for name in ("console.js", "console.css", "icon.svg")}
    assert "http" not in page.text  # every address is relative: the app's own origin, and any gateway prefix


def test_each_asset_has_its_type_is_immutable_under_its_build_and_is_revalidated_by_etag(site: httpx.Client) -> None:
    build, _ = console_build()
    for name, media_type in ASSETS.items():
        answer = site.get(asset_path(name))
        assert answer.headers["content-type"] == media_type, name
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.content == resources.files("shared.api").joinpath("console", name).read_bytes()
        again = site.get(asset_path(name), headers={"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    page = site.get(CONSOLE_PATH)
    assert site.get(CONSOLE_PATH, headers={"If-None-Match": page.headers["etag"]}).status_code == 304
    # A page loaded before a deployment asks for its build's assets: today's content, not kept.
    older = site.get(asset_path("console.js", "0123456789abcdef"))
    assert older.status_code == 200 and older.headers["cache-control"] == "no-cache"
    assert re.fullmatch(r"[0-9a-f]{16}", build)


@pytest.mark.parametrize("path", [
    "index.html", "../console_routes.py", "..%2Fconsole_routes.py", "%2e%2e%2fapp.py", "console.js.map", "CONSOLE.JS",
])
def test_only_the_listed_files_are_served(site: httpx.Client, path: str) -> None:
    answer = site.get(f"{CONSOLE_PATH}/{console_build()[0]}/{path}")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json"
    assert b"import" not in answer.content


def test_a_slash_after_console_is_sent_back_to_the_page(site: httpx.Client) -> None:
    answer = site.get(CONSOLE_PATH + "/")
    assert answer.status_code == 308 and answer.headers["location"] == "../console"


def test_no_asset_turns_text_into_markup_or_keeps_the_key_beyond_the_tab() -> None:
    """What the browser tests show for the paths they take, held for every line: text goes in as text."""
    for name in ASSETS:
        if not name.endswith(".js"):
            continue
        text = resources.files("shared.api").joinpath("console", name).read_text()
        script = re.sub(r"/\*.*?\*/|^\s*//.*$", "", text, flags=re.DOTALL | re.MULTILINE)  # the code, not its words
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                     "localStorage", "setTimeout(\"", "javascript:"):
            assert sink not in script, f"{name} uses {sink}"
        for url in re.findall(r"https?://[^\s\"'`]+", script):
            assert url == "http://www.w3.org/2000/svg", f"{name} names another origin: {url}"
