"""Control storage's bulk deletes (`ControlStore.delete_all`): many blobs in one Blob Batch request per 256, a
name already gone no error, a blob that cannot be deleted an error once the others are gone. Requests are
counted on the wire (azure-core's raw_request_hook sees every request the store's client sends)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.control.store import BATCH_DELETES, ControlStore
from tests.support.azurite import Azurite


class Counted:
    def __init__(self, azurite: Azurite, name: str):
        self.sent: list[str] = []
        self.client = ContainerClient.from_connection_string(azurite.connection_string, name,
                                                             raw_request_hook=self._note)
        self.store = ControlStore(self.client)
        self.store.ensure_container()

    def _note(self, request: Any) -> None:
        self.sent.append(request.http_request.method)


@pytest.fixture
def counted(azurite: Azurite, blob_service: BlobServiceClient) -> Any:
    name = f"ctl-{uuid.uuid4().hex[:12]}"
    yield Counted(azurite, name)
    blob_service.delete_container(name)


def test_three_hundred_deletes_are_two_batch_requests_and_a_name_already_gone_is_no_error(counted: Counted) -> None:
    names = [f"index/batches/open/acme/{n:05d}" for n in range(300)]
    counted.store.put_markers([(name, None) for name in names[:280]])  # the last 20 were never written
    counted.sent.clear()
    counted.store.delete_all(names)
    assert counted.sent == ["POST", "POST"]  # 256 and 44, each one Blob Batch request
    assert BATCH_DELETES == 256
    assert list(counted.store.list("index/")) == []


def test_one_name_is_a_plain_delete(counted: Counted) -> None:
    counted.store.put_bytes("index/one", b"")
    counted.sent.clear()
    counted.store.delete_all(["index/one"])
    counted.store.delete_all([])
    assert counted.sent == ["DELETE"]
    assert list(counted.store.list("index/")) == []


def test_a_blob_that_cannot_be_deleted_fails_the_call_once_the_others_are_gone(counted: Counted) -> None:
    names = [f"index/x/{n}" for n in range(5)]
    counted.store.put_markers([(name, None) for name in names])
    lease = counted.client.get_blob_client(names[2]).acquire_lease(lease_duration=15)
    try:
        with pytest.raises(HttpResponseError) as refused:
            counted.store.delete_all(names)
        assert f"deleting {names[2]} failed: 412" in str(refused.value)  # which blob, and why
        assert [item.name for item in counted.store.list("index/")] == [names[2]]  # the rest went
    finally:
        lease.release()
