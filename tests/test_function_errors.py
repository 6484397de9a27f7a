"""Error answers through the Functions adapter: the JSON body the FastAPI app makes must reach the client
when the app runs behind `azure.functions.AsgiMiddleware`, as it does in Azure (issue 11, item 9).

Starlette's outermost middleware answers an unexpected exception with the app's 500 handler and then
re-raises it; under uvicorn the answer is already on the wire, but the Functions adapter sees only the
exception and the host answers its own bodiless 500. The handlers are the functions' own, called in-process
with `azure.functions.HttpRequest` objects as the host calls them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from azure.functions import HttpRequest, HttpResponse

import function_app
from shared.services import Services
from tests.support.azurite import Azurite

URL = "http://localhost:7071/api"


def call(function: Any, request: HttpRequest) -> tuple[int, dict[str, Any]]:
    handler = function._function.get_user_function()
    response: HttpResponse = asyncio.run(handler(request, None))
    return response.status_code, json.loads(response.get_body())


def test_a_refusal_reaches_the_client_as_json(app_environment: None) -> None:
    put = HttpRequest("PUT", f"{URL}/destinations/bad", headers={"content-type": "application/json"},
                      body=b'{"container": "x"}')
    status, body = call(function_app.admin, put)
    assert status == 422
    assert body["error"]["code"] == "validation_failed"
    post = HttpRequest("POST", f"{URL}/destinations/nobody/batches?type=events",
                       headers={"content-type": "application/x-ndjson"}, body=b'{"event": "x", "ts": 1}\n')
    assert call(function_app.intake, post) == (404, {"error": {
        "code": "not_found", "message": "destination 'nobody' does not exist", "details": []}})


def test_an_unexpected_error_reaches_the_client_as_json_not_a_bare_host_500(
    app_environment: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Services, destination_id: str) -> dict[str, Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Services, "check_destination", broken)
    status, body = call(function_app.admin, HttpRequest("POST", f"{URL}/destinations/any/test", body=b""))
    assert status == 500
    assert body == {"error": {"code": "internal_error", "message": "an internal error occurred; it has been logged",
                              "details": []}}
    assert any("RuntimeError" in record.getMessage() for record in caplog.records)


def test_an_accepted_batch_reaches_the_client(app_environment: None, azurite: Azurite) -> None:
    from tests.support.sas import container_sas, sas_destination

    container = f"fn-{uuid.uuid4().hex[:12]}"
    from azure.storage.blob import BlobServiceClient

    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    body = json.dumps(sas_destination(azurite.account_url, container, container_sas(container, delete=True)))
    put = HttpRequest("PUT", f"{URL}/destinations/fn-ok", headers={"content-type": "application/json"},
                      body=body.encode())
    assert call(function_app.admin, put)[0] == 201
    post = HttpRequest("POST", f"{URL}/destinations/fn-ok/batches?type=events",
                       headers={"content-type": "application/x-ndjson"}, body=b'{"event": "x", "ts": 1763629200}\n')
    status, accepted = call(function_app.intake, post)
    assert status == 202 and accepted["records"] == 1
