"""Coalesced runs: batches of one destination and record type exported together, as one file per partition and
one manifest (a destination's `coalesce` setting; issue 13).

  runs/{run_id}.json                    the run: its members, the files it may have written, its outcome
  runs/leases/{destination}/{type}      leased by the worker forming or exporting that destination's runs

Membership is settled before any file is written: the run document is written first with the batches it
means to take (`sealed` false), each batch then joins it (its state names the run; a batch already in a run,
or held by a worker, does not), and the document is written again with exactly those that joined (`sealed`).
A run found unsealed is settled again the same way; a sealed one is redone with the same members and the
same file names. A batch is in at most one run: joining is a conditional write of its state.

A run that lands or fails is queued for retention (`index/retention/runs/`): its document is deleted once no
member can need it, the longer of STATE_RETENTION_DAYS and FAILED_RETENTION_DAYS after that outcome (its
landed members' states are gone by then, and its failed members' staged records, so none can be retried into
it); a run redone since (a member retried) waits for its later outcome.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal

from shared.control import batch_index
from shared.control.batch_state import LandedFile, RecordType, Timestamp, _Stored
from shared.control.leases import ensure_lease_blob
from shared.control.store import ControlStore

RUNS_PREFIX = "runs/"
RunOutcome = Literal["open", "landed", "failed"]


class RunMember(_Stored):
    batch_id: str
    records: int


class RunState(_Stored):
    run_id: str
    destination_id: str
    type: RecordType
    members: tuple[RunMember, ...]
    sealed: bool  # membership settled: the members joined and nothing else will
    state: RunOutcome
    export_date: str  # YYYY-MM-DD: where a run of profiles lands, fixed when the run is formed
    created_at: Timestamp
    updated_at: Timestamp
    written_blobs: tuple[str, ...] = ()  # files announced before their commit, until the run lands
    files: tuple[LandedFile, ...] = ()
    manifest: str | None = None

    @property
    def batch_ids(self) -> list[str]:
        return [member.batch_id for member in self.members]

    def changed(self, **changes: object) -> RunState:
        return RunState.model_validate({**dict(self), **changes})


def new_run_id(moment: datetime) -> str:
    """32 characters, time-sortable, like a batch id, and never one: runs start with 'r'."""
    return f"r{moment.strftime('%Y%m%d%H%M%S')}{secrets.token_hex(9)[:17]}"


def run_blob(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_id}.json"


def group_lease_blob(destination_id: str, record_type: str) -> str:
    return f"{RUNS_PREFIX}leases/{destination_id}/{record_type}"


def get_run(control: ControlStore, run_id: str) -> tuple[RunState, str] | None:
    """The run and its ETag; None if there is none."""
    doc = control.get(run_blob(run_id))
    return None if doc is None else (RunState.model_validate(doc.data), doc.etag)


def create_run(control: ControlStore, run: RunState) -> str:
    return control.put(run_blob(run.run_id), run.model_dump(mode="json"), create_only=True)


def save_run(control: ControlStore, run: RunState, etag: str | None = None) -> str:
    """Save the run. One that lands or fails is queued for retention first (`shared.control.retention` deletes
    its document once none of its members can need it): a marker whose save then fails is dropped by retention,
    a save without its marker would keep the document forever."""
    if run.state != "open":
        control.put_bytes(batch_index.retention_marker("runs", run.updated_at, run.run_id), b"")
    return control.put(run_blob(run.run_id), run.model_dump(mode="json"), etag=etag)


def ensure_group_lease_blob(control: ControlStore, destination_id: str, record_type: str) -> str:
    """The blob a destination's runs are leased on, created once (and asked about once a process)."""
    return ensure_lease_blob(control, group_lease_blob(destination_id, record_type))
