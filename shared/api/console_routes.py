"""The operator console (issue 17): GET /api/console and its assets, served by the app from shared/api/console/.

The page needs no key: it holds no data. Its script calls the API with the administration key (asked once, kept
in the tab's sessionStorage, sent as `x-functions-key`), so in Azure the page and its assets are served by the
anonymous `public` function and every API call by the admin function.

Caching: the assets live under a path that names the build, /api/console/<build>/<file>, where <build> is a
digest of every asset. A module's relative imports resolve inside the same folder, so one page load never mixes
two builds and each asset can be cached for a year as immutable. The page itself is revalidated on each load
(`no-cache` with an ETag) and names the current build. An asset asked under an older build (a page loaded just
before a deployment) gets today's content, not cached.

Security: a strict Content-Security-Policy (the app's own scripts only, no inline script or style, API calls to
the app's own origin only, no framing) and Trusted Types required with no policy: a string assigned to
innerHTML or the like throws, so the script can only ever render API text as text. Only the files listed in
ASSETS are served, by name: a path never reaches the file system.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from shared.api.responses import ServicesProvider, error_response

CONSOLE_PATH = "/api/console"
ASSET_PACKAGE = "shared.api"
ASSET_FOLDER = "console"
BUILD_MARK = "{{build}}"  # in index.html: replaced by the build's digest

JS = "text/javascript; charset=utf-8"
ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console.js": JS,
    "alerts.js": JS,
    "api.js": JS,
    "dom.js": JS,
    "format.js": JS,
    "destinations.js": JS,
    "batches.js": JS,
    "chart.js": JS,
    "setup.js": JS,
    "icon.svg": "image/svg+xml",
}
PAGE = "index.html"

PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
               "require-trusted-types-for 'script'; trusted-types 'none'")
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {**COMMON_HEADERS, "Content-Security-Policy": PAGE_POLICY, "X-Frame-Options": "DENY",
                "Cache-Control": "no-cache"}
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class ConsoleFile:
    content: bytes
    media_type: str
    etag: str


def read_asset(name: str) -> bytes:
    return resources.files(ASSET_PACKAGE).joinpath(ASSET_FOLDER, name).read_bytes()


def etag_of(content: bytes) -> str:
    return '"' + hashlib.sha256(content).hexdigest()[:32] + '"'


@cache
def console_build() -> tuple[str, dict[str, ConsoleFile]]:
    """The build's digest and every file, the page with the digest in its asset paths (read once a process)."""
    files = {name: read_asset(name) for name in ASSETS}
    digest = hashlib.sha256()
    for name, content in files.items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    build = digest.hexdigest()[:16]
    served = {name: ConsoleFile(content, ASSETS[name], etag_of(content)) for name, content in files.items()}
    page = read_asset(PAGE).replace(BUILD_MARK.encode(), build.encode())
    served[PAGE] = ConsoleFile(page, "text/html; charset=utf-8", etag_of(page))
    return build, served


def answer(request: Request, file: ConsoleFile, headers: dict[str, str]) -> Response:
    """The file, or 304 when the browser's copy is the same."""
    headers = {**headers, "ETag": file.etag}
    if file.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(file.content, media_type=file.media_type, headers=headers)


def add_console_routes(api: FastAPI, services: ServicesProvider) -> None:
    """The console's page and assets (they need no services: the page calls the API from the browser)."""

    @api.get(CONSOLE_PATH, include_in_schema=False)
    async def console_page(request: Request) -> Response:
        return answer(request, console_build()[1][PAGE], PAGE_HEADERS)

    @api.get(CONSOLE_PATH + "/", include_in_schema=False)
    async def console_page_with_slash() -> Response:
        # The page's asset paths are relative to /api/console: with a slash they would miss. Relative, so a
        # gateway's own prefix is kept.
        return RedirectResponse("../console", status_code=308, headers=COMMON_HEADERS)

    @api.get(CONSOLE_PATH + "/{build}/{name}", include_in_schema=False)
    async def console_asset(build: str, name: str, request: Request) -> Response:
        current, files = console_build()
        if name not in ASSETS:
            return error_response(404, "not_found", "the console has no such file")
        cache_control = IMMUTABLE if build == current else "no-cache"
        return answer(request, files[name], {**COMMON_HEADERS, "Cache-Control": cache_control})
