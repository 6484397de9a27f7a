"""Health for probes: GET /api/health and GET /api/health/ready.

- `/api/health` answers 200 when the process is up and its settings are valid (a bad setting is the usual 503
  `misconfigured` naming it). It makes no network call: a liveness probe must not fail because a dependency
  does.
- `/api/health/ready` answers 200 when control storage and the secret store each answer within
  READY_TIMEOUT_SECONDS, else 503 naming what is down. "Answers" means the service replied and let the app's
  identity in: a missing control container or probe secret still counts, a refused identity does not.

Probes call these without a key where the host allows it, so the answers are terse: a check's name and a kind
of failure, never an endpoint, a vault name or an exception's text (the log line has the detail). A flood of
calls cannot multiply the calls to the dependencies: each check runs at most once at a time in its own thread,
and its result is kept for READY_CACHE_SECONDS. The probes are left out of the OpenAPI document: they are for
load balancers and monitors, not for the API's clients.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from fastapi import FastAPI
from fastapi.responses import Response

from shared.api.responses import ServicesProvider, error_response, json_response
from shared.logging_setup import log_event
from shared.secrets.store import SecretAccessDeniedError, SecretNotFoundError, SecretStoreUnavailableError

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 5.0  # well inside a load balancer's or an availability test's own timeout
READY_CACHE_SECONDS = 5.0
# infra/ creates this secret in the vault (a fixed value that opens nothing) so that a ready probe reads one.
READINESS_SECRET = "readiness-probe"
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class CheckResult:
    check: str  # control_storage, secret_store
    ok: bool
    state: str  # "answered", or the kind of failure in words
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "state": self.state, "seconds": round(self.seconds, 3)}


def probe_control_storage(services: Services, timeout: float) -> str:
    """One read of the control container's properties: no retry, short timeouts."""
    try:
        services.control.container.get_container_properties(
            retry_total=0, connection_timeout=timeout, read_timeout=timeout)
    except ResourceNotFoundError:
        return "answered (its container is created on first use)"
    return "answered"


def probe_secret_store(services: Services, timeout: float) -> str:
    """One read of the readiness secret, past the cache (the store's own client bounds its time)."""
    try:
        services.secrets.store.get_secret(READINESS_SECRET)
    except SecretNotFoundError:
        return f"answered (it holds no secret named {READINESS_SECRET})"
    return "answered"


CHECKS: dict[str, Callable[[Services, float], str]] = {
    "control_storage": probe_control_storage,
    "secret_store": probe_secret_store,
}
WORDS = {"control_storage": "control storage", "secret_store": "the secret store"}


def failure_state(exc: BaseException) -> str:
    """A kind of failure in words, from the exception's type and HTTP status only (nothing it quotes)."""
    if isinstance(exc, SecretAccessDeniedError):
        return "the app's identity is refused"
    if isinstance(exc, SecretStoreUnavailableError | ServiceRequestError | ServiceResponseError):
        return "unreachable or failing"
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        return "the app's identity got no token"
    if isinstance(exc, HttpResponseError) and exc.status_code in (401, 403):
        return f"the app's identity is refused (HTTP {exc.status_code})"
    if isinstance(exc, HttpResponseError) and exc.status_code:
        return f"failing (HTTP {exc.status_code})"
    return f"failing ({type(exc).__name__})"


class Readiness:
    """Runs each check at most once at a time and keeps its result for `cache_seconds`."""

    def __init__(self, timeout: float = READY_TIMEOUT_SECONDS, cache_seconds: float = READY_CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[str, Future[CheckResult]] = {}
        self._kept: dict[str, tuple[CheckResult, float]] = {}
        self._executor = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readiness")

    async def results(self, services: Services) -> list[CheckResult]:
        return list(await asyncio.gather(*(self._result(name, services) for name in CHECKS)))

    async def _result(self, name: str, services: Services) -> CheckResult:
        with self._lock:
            kept = self._kept.get(name)
            if kept is not None and self._clock() - kept[1] < self.cache_seconds:
                return kept[0]
            running = self._running.get(name)
            if running is None:
                running = self._executor.submit(self._run, name, services)
                self._running[name] = running
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(running)), self.timeout)
        except TimeoutError:
            # The check goes on in its thread; the next call waits on it rather than starting another.
            return CheckResult(name, False, f"no answer within {self.timeout:g} s", self.timeout)

    def _run(self, name: str, services: Services) -> CheckResult:
        started = self._clock()
        try:
            state = CHECKS[name](services, self.timeout)
            result = CheckResult(name, True, state, self._clock() - started)
        except Exception as exc:  # every failure is an answer: down, and why
            result = CheckResult(name, False, failure_state(exc), self._clock() - started)
            log_event(log, "readiness check failed", logging.WARNING, check=name, state=repr(result.state),
                      error=type(exc).__name__)
        with self._lock:
            self._kept[name] = (result, self._clock())
            self._running.pop(name, None)
        return result


def readiness_answer(results: list[CheckResult]) -> Response:
    down = [result for result in results if not result.ok]
    if not down:
        return json_response({"status": "ready", "checks": [r.to_json() for r in results]}, headers=NO_STORE)
    words = "; ".join(f"{WORDS[r.check]} is down: {r.state}" for r in down)
    response = error_response(503, "not_ready", f"not ready: {words}", [r.to_json() for r in results])
    response.headers.update(NO_STORE)
    return response


def add_health_routes(api: FastAPI, services: ServicesProvider) -> None:
    readiness = Readiness()

    @api.get("/api/health", include_in_schema=False)
    async def health() -> Response:
        services()  # builds the settings (a bad one answers 503 naming it) and clients; no network call
        return json_response({"status": "ok"}, headers=NO_STORE)

    @api.get("/api/health/ready", include_in_schema=False)
    async def ready() -> Response:
        return readiness_answer(await readiness.results(services()))
