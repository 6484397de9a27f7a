"""What the Azure Functions host does in front of the HTTP functions, emulated for `make serve` and the tests.

Routing: a request goes to the function whose route template (shared.api.functions, under /api/) matches its
path and whose methods include its method. Only the template forms this app uses are understood, as the host's
ASP.NET Core router reads them: literal segments (compared case-insensitively), `{name}` (one non-empty
segment) and a last `{*name}` catch-all, optionally with a `regex(...)` constraint that must match somewhere in
the rest of the path, case-insensitively (RegexRouteConstraint). The path is percent-decoded except `%2F`, as
ASP.NET Core decodes it. The host takes the first matching template in load order; `functions_for` returns
every match, so the tests can show there is never more than one.

Keys: `FunctionKeyCheck` asks for the key of the function that serves the request, in the `x-functions-key`
header or else `?code=`, as the host does; a function whose local key is not set stays open, and so does the
public function (auth level ANONYMOUS), which has no key at all. Key values are
compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from urllib.parse import parse_qs, unquote

from pydantic import AliasChoices
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.api.docs import KEY_HEADER, KEY_QUERY
from shared.api.functions import HTTP_FUNCTIONS, ROUTE_PREFIX, HttpFunction
from shared.api.responses import error_response
from shared.settings import Settings

_PARAMETER = re.compile(r"\{[A-Za-z_]\w*\}")
_CATCH_ALL = re.compile(r"\{\*[A-Za-z_]\w*(?::regex\((?P<regex>.+)\))?\}", re.DOTALL)


class UnknownTemplate(ValueError):
    """A route template with a form this emulation does not understand: extend it before relying on it."""


@dataclass(frozen=True)
class Template:
    segments: tuple[str | None, ...]  # a literal segment, or None for a `{name}` parameter
    catch_all: bool
    constraint: re.Pattern[str] | None  # the catch-all's regex constraint, if any

    def matches(self, path: str) -> bool:
        """Does ``path`` (decoded, starting with '/') match? One trailing '/' is allowed, as in ASP.NET Core."""
        rest = path.removeprefix("/")
        for literal in self.segments:
            segment, _, rest = rest.partition("/")
            if not segment or (literal is not None and segment.lower() != literal.lower()):
                return False
        if not self.catch_all:
            return rest == ""
        if self.constraint is None:
            return True
        return bool(rest) and self.constraint.search(rest) is not None  # an empty value fails a constraint


@cache
def parse_template(route: str) -> Template:
    """The host's full template, ``{ROUTE_PREFIX}/{route}``, in the forms this app uses."""
    head, star, tail = f"{ROUTE_PREFIX}/{route}".partition("{*")
    catch_all = _CATCH_ALL.fullmatch(star + tail) if star else None
    if star and (catch_all is None or not head.endswith("/")):
        raise UnknownTemplate(f"only a whole last segment can be a catch-all: {route!r}")
    segments: list[str | None] = []
    for segment in head.strip("/").split("/"):
        if _PARAMETER.fullmatch(segment):
            segments.append(None)
        elif not segment or any(c in segment for c in "{}*?"):
            raise UnknownTemplate(f"segment {segment!r} of {route!r} is neither a literal nor a {{name}}")
        else:
            segments.append(segment)
    regex = catch_all.group("regex") if catch_all else None
    constraint = re.compile(regex, re.IGNORECASE) if regex else None
    return Template(tuple(segments), catch_all is not None, constraint)


def decode_path(raw_path: str) -> str:
    """Percent-decode a request path except `%2F`, which stays as it is (ASP.NET Core's PathString)."""
    return unquote(re.sub("%2[Ff]", lambda m: "%25" + m.group(0)[1:], raw_path))


def functions_for(method: str, raw_path: str) -> list[HttpFunction]:
    """Every function whose template and methods match: the host's router allows no more than one here."""
    path = decode_path(raw_path)
    return [function for function in HTTP_FUNCTIONS
            if method.upper() in function.methods and parse_template(function.route).matches(path)]


def function_for(method: str, raw_path: str) -> HttpFunction | None:
    """The function the host would run for this request; None if it would answer 404."""
    found = functions_for(method, raw_path)
    return found[0] if found else None


def presented_key(scope: Scope) -> bytes | None:
    """The key a request carries: the `x-functions-key` header, or else the `code` query parameter."""
    for name, value in scope.get("headers", []):
        if name.lower() == KEY_HEADER.encode():
            return bytes(value)
    codes = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(KEY_QUERY)
    return codes[0].encode() if codes else None


KEYED_FUNCTIONS = tuple(function for function in HTTP_FUNCTIONS if function.local_key_setting is not None)
OPEN_FUNCTIONS = tuple(function.name for function in HTTP_FUNCTIONS if function.local_key_setting is None)


def local_key_setting(function: HttpFunction) -> str:
    """The app setting that holds a function's key under `make serve` (LOCAL_INTAKE_KEY, LOCAL_ADMIN_KEY)."""
    field = function.local_key_setting
    if field is None:
        raise ValueError(f"the {function.name} function has no key")
    alias = Settings.model_fields[field].validation_alias
    return str(alias.choices[0]) if isinstance(alias, AliasChoices) else field.upper()


def local_keys(settings: Settings) -> dict[str, str]:
    """Each keyed function's local key, for the functions whose LOCAL_*_KEY is set."""
    found = {}
    for function in KEYED_FUNCTIONS:
        key = getattr(settings, str(function.local_key_setting))
        if key is not None:
            found[function.name] = key.get_secret_value()
    return found


def describe_local_keys(keys: Mapping[str, str]) -> str:
    """The serve banner's line about keys: which functions need one (never the keys themselves)."""
    settings = " and ".join(local_key_setting(function) for function in KEYED_FUNCTIONS)
    anonymous = f"{' and '.join(OPEN_FUNCTIONS)} needs none, here or in Azure"
    if not keys:
        return (f"Function keys: none needed locally (set {settings} to check them as Azure does); in Azure each "
                f"keyed function has its own key, sent as the {KEY_HEADER} header or ?{KEY_QUERY}=; {anonymous}.")
    needs = ", ".join(
        f"{function.name} needs {local_key_setting(function)}" if function.name in keys
        else f"{function.name} is open ({local_key_setting(function)} not set)"
        for function in KEYED_FUNCTIONS
    )
    return (f"Function keys, as in Azure: {needs}, {anonymous}; send a key as the {KEY_HEADER} header or "
            f"?{KEY_QUERY}=.")


class FunctionKeyCheck:
    """ASGI middleware for `make serve`: the host's function-key check, with keys from LOCAL_*_KEY settings.

    ``keys`` maps a function's name to its key; a function left out is open. A request no function serves is
    answered 404, as the host answers it.
    """

    def __init__(self, app: ASGIApp, keys: Mapping[str, str]):
        self.app = app
        self.keys = {name: key.encode() for name, key in keys.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        function = function_for(scope["method"], raw_path)
        if function is None:
            response = error_response(404, "not_found", f"no function serves {scope['method']} {scope['path']}")
        elif (key := self.keys.get(function.name)) is None or hmac.compare_digest(presented_key(scope) or b"", key):
            await self.app(scope, receive, send)
            return
        else:
            response = error_response(
                401, "unauthorized",
                f"this request needs the {function.name} function's key, in the {KEY_HEADER} header or as "
                f"?{KEY_QUERY}=; the key sent, if any, is not that function's key",
            )
        await response(scope, receive, send)
