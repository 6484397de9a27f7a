"""Fuzz the HTTP API from its own OpenAPI document (schemathesis), against the real uvicorn server and Azurite.

For every operation, schema-conforming (positive) and schema-violating (negative) requests, once with
generated path parameters and once aimed at a destination and a batch that exist (so the intake,
status, retry and test routes get past their 404s). Every answer must be: not a 5xx, a status the
document lists, the content type it lists, and for any error the JSON shape {"error": {"code",
"message", "details"}}. Bounded for CI (RELIABILITY_SCALE multiplies the examples).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import schemathesis
from azure.storage.blob import ContainerClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.generation import GenerationMode

from scripts import sample_data
from shared.api.app import create_api
from shared.services import Services
from tests.reliability.hostile_support import SCALE, examples, report
from tests.shared.export_helpers import make_destination, post_batch
from tests.support.azurite import Azurite

# The operations, read from the document the app serves (a provider that is never called: listing only).
DOCUMENT = create_api(lambda: None).openapi()  # type: ignore[arg-type, return-value]


def cases() -> list[Any]:
    """Positive requests for every operation; negative ones where something can violate the schema (a body,
    a query or header parameter: a path segment is always a string). Path parameters generated, and
    aimed at what exists."""
    found = []
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            free = "requestBody" in operation or any(p["in"] != "path" for p in operation.get("parameters", []))
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                if mode is GenerationMode.NEGATIVE and not free:
                    continue
                for aim in ("generated", "existing") if "{" in path else ("generated",):
                    label = f"{method.upper()} {path} {mode.value} {aim}"
                    found.append(pytest.param(method.upper(), path, mode, aim, id=label))
    return found


CASES = cases()
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]
MAX_EXAMPLES = examples(15)

@pytest.fixture
def target(api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> dict[str, Any]:
    """A destination and a staged batch to aim at, behind the real server."""
    dest = make_destination(api, azurite, fresh_container, dest_id="fuzz-dest", compression="none")
    batch = post_batch(api, dest, list(sample_data.events(3)))
    return {"base_url": str(api.base_url).rstrip("/"), "destination_id": dest, "batch_id": batch["batch_id"]}


def check_error_shape(response: Any) -> None:
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type") or [""]  # schemathesis: a list per header
    assert content_type[0] == "application/json", response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)


@pytest.mark.parametrize(("method", "path", "mode", "aim"), CASES)
def test_api_answers_every_generated_request_without_a_server_error(
    target: dict[str, Any], method: str, path: str, mode: GenerationMode, aim: str
) -> None:
    base_url = target["base_url"]
    schema = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json")
    operation = schema[path][method]
    answered: dict[int, int] = {}  # status -> how many answers
    fixed = None
    if aim == "existing":
        fixed = {name: target[name] for name in ("destination_id", "batch_id") if "{" + name + "}" in path}

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=SCALE == 1,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, timeout=60)
        if response.status_code == 503:  # control storage busy for a moment is not the input's doing: ask again
            time.sleep(1)
            response = case.call(base_url=base_url, timeout=60)
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)
        check_error_shape(response)

    try:
        run()
    except Unsatisfiable:
        # Negative generation found nothing to break (e.g. the only free input is an enum-typed query).
        pytest.skip("no schema-violating request exists for this operation")
    finally:
        report(f"fuzz {method} {path} {mode.value} {aim}", statuses=answered)

