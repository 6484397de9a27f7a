"""Claim a batch under a blob lease, renewed in the background while the worker exports it."""

from __future__ import annotations

import contextlib
import logging
import threading
from types import TracebackType

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, ContainerClient

from shared.control.store import ControlStore

log = logging.getLogger(__name__)

_known_lease_blobs: set[tuple[str, str]] = set()  # created, by this process or another: never asked for again


def ensure_lease_blob(control: ControlStore, name: str) -> str:
    """The empty blob `name` that workers lease, created once (and asked about once a process); one that exists,
    leased or not, is left as it is."""
    if (control.container.container_name, name) in _known_lease_blobs:
        return name
    control.ensure_container()
    try:
        control.container.upload_blob(name, b"", overwrite=False)
    except ResourceExistsError:
        pass
    except HttpResponseError as exc:
        if exc.status_code not in {409, 412}:  # exists, and leased: another worker holds it
            raise
    _known_lease_blobs.add((control.container.container_name, name))
    return name


class LeaseLost(Exception):
    """The lease could not be renewed: another worker may now own the batch; stop writing."""


class BatchLease:
    """A held lease on a state blob. Use as a context manager; `check()` raises once the lease is lost."""

    def __init__(self, container: ContainerClient, blob_name: str, seconds: int):
        self._client = BlobLeaseClient(container.get_blob_client(blob_name))
        self.blob_name = blob_name
        self.seconds = seconds
        self._stop = threading.Event()
        self._lost = False
        self._thread: threading.Thread | None = None

    @property
    def id(self) -> str:
        return str(self._client.id)

    def acquire(self) -> bool:
        """True when acquired; False when another worker holds it or the blob is gone."""
        try:
            self._client.acquire(lease_duration=self.seconds)
        except (ResourceExistsError, ResourceNotFoundError):
            return False
        except HttpResponseError as exc:
            if exc.status_code in {409, 412}:
                return False
            raise
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.blob_name}", daemon=True)
        self._thread.start()
        return True

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self._client.renew()
            except Exception as exc:
                log.warning("lease renewal failed for %s: %s", self.blob_name, type(exc).__name__)
                self._lost = True
                return

    def check(self) -> None:
        if self._lost:
            raise LeaseLost(f"the lease on {self.blob_name} was lost; another worker may take the batch over")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        # An expired or broken lease frees itself; nothing to do if release fails.
        with contextlib.suppress(Exception):
            self._client.release()

    def __enter__(self) -> BatchLease:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
