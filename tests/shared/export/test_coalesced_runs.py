"""Coalesced runs (issue 13, item 4): small batches of a destination with `coalesce` set land together, one file
per partition and one manifest per run; every record once; a batch names its run; two passes at once never
export a run twice or put a batch in two runs; a run whose destination fails fails each member, and a retry
redoes the run under the same names."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContainerClient

from scripts import sample_data
from shared.control import batches, transitions
from shared.control import runs as run_docs
from shared.export.runner import PassSummary, run_export_pass
from shared.services import Services
from tests.shared.export_helpers import data_files, is_open, make_destination, manifests, post_batch, read_blob
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination

COALESCE = {"max_delay_seconds": 0, "target_file_mb": 128}


def post_small_batches(api: httpx.Client, dest: str, count: int, size: int = 5) -> dict[str, list[bytes]]:
    """`count` batches of `size` events over 2 hours; each batch's records as landed lines, by batch id."""
    posted = {}
    for n in range(count):
        records = list(sample_data.events(size, seed=n, hours=2))
        posted[post_batch(api, dest, records)["batch_id"]] = [orjson.dumps(r) for r in records]
    return posted


def landed_lines(container: ContainerClient) -> Counter[bytes]:
    return Counter(orjson.dumps(orjson.loads(line)) for name in data_files(container)
                   for line in read_blob(container, name).splitlines())


def status(api: httpx.Client, batch_id: str) -> dict[str, Any]:
    return dict(api.get(f"/api/batches/{batch_id}").json())


def test_small_batches_coalesced_land_in_one_file_per_partition_and_one_manifest(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    make_destination(api, azurite, fresh_container, coalesce=COALESCE)
    assert api.get("/api/destinations/acme").json()["coalesce"] == COALESCE
    posted = post_small_batches(api, "acme", 200)

    summary = run_export_pass(services)
    assert summary.landed == 200 and summary.failed == summary.retried == 0
    names = data_files(fresh_container)
    assert len(names) == 2  # two hour partitions, one run: one file each
    assert landed_lines(fresh_container) == Counter(line for lines in posted.values() for line in lines)

    [manifest] = manifests(fresh_container)
    assert manifest["run_id"].startswith("r") and "batch_id" not in manifest
    assert {b["batch_id"]: b["records"] for b in manifest["batches"]} == {b: 5 for b in posted}
    assert manifest["records"] == 1000 and sorted(f["name"] for f in manifest["files"]) == names
    for batch_id in list(posted)[:10]:
        batch = status(api, batch_id)
        assert batch["state"] == "landed" and batch["run_id"] == manifest["run_id"]
        assert batch["manifest"] == f"events/_manifests/{manifest['run_id']}.json"
    run, _ = run_docs.get_run(services.control, manifest["run_id"]) or (None, None)
    assert run is not None and run.state == "landed" and len(run.members) == 200
    leased = [item.name for item in services.control.list(f"{run_docs.RUNS_PREFIX}leases/acme/")]
    assert leased == [run_docs.group_lease_blob("acme", "events")]  # no profiles were due: their lease was not asked


def test_a_run_closes_at_its_target_size_and_a_small_one_waits_its_delay(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    make_destination(api, azurite, fresh_container, coalesce={"max_delay_seconds": 3600, "target_file_mb": 1})
    posted = post_small_batches(api, "acme", 4, size=1500)  # about 420 KB each: three close a 1 MiB run
    summary = run_export_pass(services)
    assert summary.landed == 3 and summary.skipped == 1  # the fourth waits for others, up to an hour
    assert len(manifests(fresh_container)) == 1
    waiting = [b for b in posted if status(api, b)["state"] == "pending"]
    assert len(waiting) == 1 and status(api, waiting[0]).get("run_id") is None


def test_two_passes_at_once_never_export_a_run_twice_or_a_batch_in_two_runs(
    api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient
) -> None:
    containers = {}
    for dest in ("acme", "globex", "initech"):
        containers[dest] = blob_service.create_container(f"dest-{dest}-{threading.get_ident() % 10_000}")
        make_destination(api, azurite, containers[dest], dest_id=dest, coalesce=COALESCE)
    posted = {dest: post_small_batches(api, dest, 30) for dest in containers}

    summaries: list[PassSummary] = []
    passes = [threading.Thread(target=lambda: summaries.append(run_export_pass(services))) for _ in range(2)]
    for thread in passes:
        thread.start()
    for thread in passes:
        thread.join()
    while sum(s.landed for s in summaries) < 90:  # what one pass left to the other, a later pass takes
        summaries.append(run_export_pass(services))
        assert len(summaries) < 6
    for dest, container in containers.items():
        expected = Counter(line for lines in posted[dest].values() for line in lines)
        assert landed_lines(container) == expected  # every record once
        found = manifests(container)
        in_runs = [b["batch_id"] for m in found for b in m["batches"]]
        assert sorted(in_runs) == sorted(posted[dest])  # each batch in exactly one run
        container.delete_container()


def test_a_failed_run_fails_every_member_and_a_retry_redoes_it_under_the_same_names(
    api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient
) -> None:
    container = blob_service.create_container(f"dest-gone-{threading.get_ident() % 10_000}")
    make_destination(api, azurite, container, coalesce=COALESCE)
    posted = post_small_batches(api, "acme", 4)
    container.delete_container()  # the destination fails: every member with the reason
    assert run_export_pass(services).failed == 4
    failed = [status(api, b) for b in posted]
    assert {b["state"] for b in failed} == {"failed"} and len({b["run_id"] for b in failed}) == 1
    assert {b["last_error"]["code"] for b in failed} == {"container_not_found"}
    run_id = failed[0]["run_id"]

    container = blob_service.create_container(container.container_name)
    first = next(iter(posted))
    assert api.post(f"/api/batches/{first}/retry").status_code == 200
    assert run_export_pass(services).landed == 1
    [manifest] = manifests(container)
    assert manifest["run_id"] == run_id and [b["batch_id"] for b in manifest["batches"]] == [first]
    assert landed_lines(container) == Counter(posted[first])
    for batch_id in list(posted)[1:]:  # retried after their run landed without them: a new run of their own
        assert api.post(f"/api/batches/{batch_id}/retry").status_code == 200
    assert run_export_pass(services).landed == 3
    later = [m for m in manifests(container) if m["run_id"] != run_id]
    assert len(later) == 1 and sorted(b["batch_id"] for b in later[0]["batches"]) == sorted(list(posted)[1:])
    assert landed_lines(container) == Counter(line for lines in posted.values() for line in lines)


@pytest.mark.parametrize("partition", ["day"])
def test_a_coalesced_run_by_day(api: httpx.Client, services: Services, azurite: Azurite,
                                fresh_container: ContainerClient, partition: str) -> None:
    make_destination(api, azurite, fresh_container, coalesce=COALESCE, partition=partition)
    posted = post_small_batches(api, "acme", 20)
    assert run_export_pass(services).landed == 20
    assert len(data_files(fresh_container)) == 1  # two hours, one day
    assert landed_lines(fresh_container) == Counter(line for lines in posted.values() for line in lines)


@pytest.mark.parametrize(("extra", "field"), [
    ({"partition": "minute"}, "partition"),
    ({"coalesce": {"max_delay_seconds": -1, "target_file_mb": 128}}, "coalesce.max_delay_seconds"),
    ({"coalesce": {"max_delay_seconds": 0, "target_file_mb": 0}}, "coalesce.target_file_mb"),
    ({"coalesce": {"max_delay_seconds": 10**9}}, "coalesce.max_delay_seconds"),
    ({"coalesce": {"target_file_mb": 128, "flush": True}}, "coalesce.flush"),
    ({"coalesce": "yes"}, "coalesce"),
])
def test_a_wrong_partition_or_coalesce_setting_is_refused_and_nothing_saved(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, extra: dict[str, Any], field: str
) -> None:
    body = sas_destination(azurite.account_url, fresh_container.container_name,
                           container_sas(fresh_container.container_name), **extra)
    answer = api.put("/api/destinations/acme", json=body)
    assert answer.status_code == 422, answer.text
    assert field in [detail["field"] for detail in answer.json()["error"]["details"]], answer.text
    assert api.get("/api/destinations/acme").status_code == 404


def test_a_batch_begun_on_its_own_before_coalesce_was_set_is_finished_on_its_own(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    make_destination(api, azurite, fresh_container)
    alone = post_small_batches(api, "acme", 1)
    [batch_id] = alone
    state = batches.get_state(services.control, batch_id)  # its worker died mid-export: running, in no run
    batches.save_state(services.control, transitions.start_attempt(state, batches.now_utc()), previous="pending")
    make_destination(api, azurite, fresh_container, coalesce=COALESCE)
    together = post_small_batches(api, "acme", 3)

    assert run_export_pass(services).landed == 4
    finished = status(api, batch_id)
    assert finished["state"] == "landed" and finished["run_id"] is None and finished["total_attempts"] == 2
    assert sorted(m.get("batch_id", m.get("run_id", ""))[0] for m in manifests(fresh_container)) == ["b", "r"]
    assert landed_lines(fresh_container) == Counter(line for lines in (alone | together).values() for line in lines)


def test_members_a_dead_worker_left_running_in_a_landed_run_land_with_it(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    """The worker died after the run's files, its manifest and its landed document were written, before three of
    its members' states said landed (the 4-worker SIGKILL test found it: they stayed running, due, forever).
    The next pass lands them with their run: no file is written again, their open markers go."""
    dest = make_destination(api, azurite, fresh_container, coalesce={"max_delay_seconds": 0, "target_file_mb": 128})
    posted = post_small_batches(api, dest, 6)
    assert run_export_pass(services).landed == 6
    blobs_before = sorted(b.name for b in fresh_container.list_blobs())
    control = services.control
    interrupted = list(posted)[:3]
    for batch_id in interrupted:  # as the dead worker left them: running in the run, still due
        landed = batches.get_state(control, batch_id)
        running = landed.changed(state="running", finished_at=None, blobs=(), manifest=None, output_bytes=0)
        batches.save_state(control, running, previous="landed")  # its open marker with it
    summary = run_export_pass(services)
    assert {b["batch_id"]: b["outcome"] for b in summary.batches} == dict.fromkeys(interrupted, "landed")
    run_id = batches.get_state(control, interrupted[0]).run_id
    run = run_docs.get_run(control, run_id or "")
    assert run is not None and run[0].state == "landed"
    for batch_id in interrupted:
        state = batches.get_state(control, batch_id)
        assert state.state == "landed" and state.run_id == run_id and state.manifest == run[0].manifest
        assert [f.name for f in state.blobs] == [f.name for f in run[0].files]
        assert not is_open(control, batch_id)
    assert sorted(b.name for b in fresh_container.list_blobs()) == blobs_before  # nothing written again
    assert run_export_pass(services).batches == []


def test_a_runs_members_leave_the_index_together(api: httpx.Client, services: Services, azurite: Azurite,
                                                 fresh_container: ContainerClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Once its run lands, its members' open markers go in one Blob Batch request (not one delete each) and their
    landings are one write of the destination's activity; each member is listed landed, once."""
    make_destination(api, azurite, fresh_container, coalesce=COALESCE)
    posted = post_small_batches(api, "acme", 40, size=2)
    sent: list[str] = []
    real_send = RequestsTransport.send

    def counted(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:  # every storage request, still sent
        path = urlsplit(request.url).path.split("/", 3)[-1]
        query = parse_qs(urlsplit(request.url).query)
        sent.append(f"{request.method} {'batch' if query.get('comp') == ['batch'] else path.split('/')[0]}")
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(RequestsTransport, "send", counted)
    assert run_export_pass(services).landed == 40
    monkeypatch.undo()
    assert sent.count("POST batch") == 1 and sent.count("DELETE index") == 0, Counter(sent)
    assert sent.count("PUT activity") == 1, Counter(sent)
    assert not any(is_open(services.control, batch_id) for batch_id in posted)
    listed = api.get("/api/batches", params={"destination_id": "acme", "limit": 100}).json()["batches"]
    assert sorted(b["batch_id"] for b in listed) == sorted(posted) and {b["state"] for b in listed} == {"landed"}
    assert api.get("/api/destinations/acme/status").json()["last_landed"]["batch_id"] in posted
