"""Error messages quote nothing from a secret and nothing verbatim from a remote server (issue 9, item 7).

The "destination" here is a loopback server (allowed in development) that answers every request with a
status, a reason phrase and an `x-ms-error-code` of the attacker's choosing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from azure.storage.blob import ContainerClient
from pytest_httpserver import HTTPServer
from werkzeug import Response

from tests.reliability.hostile_support import report
from tests.support import secret_watch
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination

PHRASE = "Denied-see-http-internal-admin-7f3a"
INJECTED = "Injected<script>code-91c2"


def future_sas(container: str) -> str:
    return container_sas(container, delete=True, expiry=datetime.now(UTC) + timedelta(days=2))


def test_a_sas_expiry_that_is_not_a_date_is_not_echoed(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    bogus = "not-a-date-but-a-secretish-value-5d1e"
    token = re.sub(r"se=[^&]+", f"se={bogus}", future_sas(fresh_container.container_name))
    secret_watch.register(token, "SAS with a bogus se")
    response = api.put("/api/destinations/badse",
                       json=sas_destination(azurite.account_url, fresh_container.container_name, token))
    assert response.status_code == 422, response.text
    assert bogus not in response.text
    assert "expiry (se) is not an ISO 8601 date-time" in response.json()["error"]["details"][0]["message"]


@pytest.mark.parametrize(
    ("status", "code"),
    [(403, "authentication_failed"), (418, "destination_error"), (503, "destination_busy"),
     (404, "container_not_found"), (400, "destination_error")],
)
def test_a_remote_reason_phrase_and_error_code_are_never_quoted(
    api: httpx.Client, httpserver: HTTPServer, status: int, code: str
) -> None:
    httpserver.expect_request(re.compile(".*")).respond_with_response(Response(
        f"<Error><Code>{INJECTED}</Code><Message>{PHRASE}</Message></Error>",
        status=f"{status} {PHRASE}", headers={"x-ms-error-code": INJECTED, "Content-Type": "application/xml"},
    ))
    body = sas_destination(httpserver.url_for("/devstoreaccount1").rstrip("/"), "box", future_sas("box"))
    at_save = api.put("/api/destinations/talker", json=body)
    assert api.put("/api/destinations/talker", params={"verify": "false"}, json=body).status_code == 201
    tested = api.post("/api/destinations/talker/test")

    for response in (at_save, tested):
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == code
        for quoted in (PHRASE, INJECTED, "Injected", "StorageErrorCode"):
            assert quoted not in response.text
    report("remote words", status=status, code=code, reason_phrase_quoted=False, error_code_quoted=False)


def test_a_refused_sas_names_its_likely_causes_never_an_enum_name(
    api: httpx.Client, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(re.compile(".*")).respond_with_response(Response(
        "<Error><Code>AuthorizationFailure</Code><Message>This request is not authorized.</Message></Error>",
        status=403,
        headers={"x-ms-error-code": "AuthorizationFailure", "Content-Type": "application/xml"},
    ))
    body = sas_destination(httpserver.url_for("/devstoreaccount1").rstrip("/"), "box", future_sas("box"))
    assert api.put("/api/destinations/enum", params={"verify": "false"}, json=body).status_code == 201
    error = api.post("/api/destinations/enum/test").json()["error"]
    assert "The likely causes, in order: 1) it was made for another container than 'box'" in error["message"]
    assert "StorageErrorCode" not in error["message"] and "AUTHORIZATION_FAILURE" not in error["message"]
