"""Bodies sent with the wrong headers, refused with their likely cause, through the real HTTP API (issue 12, item 2).

NDJSON sent as application/json, and gzip sent without 'Content-Encoding: gzip' (or JSON sent with it): the 400
says which, and how to send it; nothing is staged. Intake still reads the body as it arrives: a body past the
size that is parsed whole to explain it gets the same words.
"""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.intake.records import BodyReader, RecordsRejected
from shared.services import Services, build_services
from shared.settings import Settings
from tests.reliability.hostile_support import staged_or_state_blobs
from tests.shared.export_helpers import make_destination
from tests.support.azurite import Azurite

NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}
GZIP = {"content-encoding": "gzip"}
RECORDS = list(sample_data.events(20))
NDJSON_BODY = b"".join(orjson.dumps(record) + b"\n" for record in RECORDS)
JSON_BODY = orjson.dumps(RECORDS)
# Past the 4 MiB a body of another shape than an array is kept whole to be explained (json_array).
LARGE_NDJSON_BODY = b"".join(orjson.dumps({**RECORDS[0], "pad": "x" * 1000, "n": n}) + b"\n" for n in range(5000))


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_services(settings.model_copy(update={"max_request_bytes": 8 * 1024 * 1024}))


@pytest.fixture
def dest(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient) -> str:
    return make_destination(api, azurite, fresh_container, dest_id="mistaken")


def refused(api: httpx.Client, services: Services, dest: str, body: bytes, headers: dict[str, str]) -> str:
    """The message of the 400 that refuses ``body``, its only problem being the body as a whole; nothing staged."""
    response = api.post(f"/api/destinations/{dest}/batches", params={"type": "events"}, content=body,
                        headers=headers)
    assert response.status_code == 400, response.text[:500]
    error = response.json()["error"]
    assert error["details"] in ([], [{"line": 0, "field": None, "message": error["message"]}]), error
    assert staged_or_state_blobs(services) == []
    return str(error["message"])


@pytest.mark.parametrize("body", [NDJSON_BODY, LARGE_NDJSON_BODY], ids=["small", "past 4 MiB"])
def test_ndjson_sent_as_json_is_refused_suggesting_the_ndjson_content_type(
    api: httpx.Client, services: Services, dest: str, body: bytes
) -> None:
    message = refused(api, services, dest, body, JSON)
    assert "the body holds one JSON object per line (NDJSON), but its Content-Type is application/json" in message
    assert "send it with 'Content-Type: application/x-ndjson'" in message


@pytest.mark.parametrize(("body", "headers"), [(NDJSON_BODY, NDJSON), (JSON_BODY, JSON), (LARGE_NDJSON_BODY, JSON)],
                         ids=["ndjson", "json", "json past 4 MiB"])
def test_gzip_sent_without_its_content_encoding_is_refused_saying_so(
    api: httpx.Client, services: Services, dest: str, body: bytes, headers: dict[str, str]
) -> None:
    # Stored, not deflated: the large body stays past 4 MiB compressed, so it is refused as it arrives.
    message = refused(api, services, dest, gzip.compress(body, compresslevel=0), headers)
    assert "the body is gzip-compressed data (it starts with the gzip magic bytes 1f 8b)" in message
    assert "send a gzip body with the header 'Content-Encoding: gzip'" in message
    assert "UTF-8" not in message  # not the bytes' symptom: their cause


def test_json_sent_with_a_gzip_content_encoding_is_refused_saying_so(
    api: httpx.Client, services: Services, dest: str
) -> None:
    message = refused(api, services, dest, NDJSON_BODY, {**NDJSON, **GZIP})
    assert "it starts like uncompressed JSON, but was sent with 'Content-Encoding: gzip'" in message


def test_the_same_words_when_the_body_arrives_a_piece_at_a_time() -> None:
    """The hints read only what intake already keeps: fed in small pieces, the body gets the same refusal."""
    def fed(body: bytes, kind: str, piece: int) -> str:
        reader = BodyReader("json" if kind == "json" else "ndjson", "events")
        for at in range(0, len(body), piece):
            reader.feed(body[at : at + piece])
        with pytest.raises(RecordsRejected) as refused:
            reader.finish()
        return refused.value.message

    for piece in (1, 7, 65_536):
        assert "(NDJSON)" in fed(NDJSON_BODY, "json", piece)
        assert "gzip magic bytes" in fed(gzip.compress(NDJSON_BODY), "ndjson", piece)
        assert "gzip magic bytes" in fed(gzip.compress(JSON_BODY), "json", piece)
    assert "(NDJSON)" in fed(LARGE_NDJSON_BODY, "json", 65_536)
    assert "gzip magic bytes" in fed(gzip.compress(LARGE_NDJSON_BODY, compresslevel=0), "json", 65_536)
