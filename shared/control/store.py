"""Control storage: JSON documents in the app's own blob container, with ETags and leases.

Destinations, batch state and staged records live here. Nothing here ever holds a secret value.
"""

from __future__ import annotations

import builtins
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import orjson
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.pipeline.transport._requests_basic import BiggerBlockSizeHTTPAdapter
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, ExponentialRetry
from requests import PreparedRequest, Response, Session
from urllib3.util.retry import Retry

from shared.control.buffer_upload import upload_buffers
from shared.errors import ServiceUnavailable
from shared.settings import Settings

log = logging.getLogger(__name__)

JSON_CONTENT = ContentSettings(content_type="application/json")
# Staged records are downloaded in pieces of this size. The SDK's default first GET of 32 MiB made the
# export pass's peak RSS grow with the staged blob's size (the SDK holds a chunk three to four times over
# while it downloads it); its default later GETs of 4 MiB cost Azurite twice the CPU of 8-16 MiB ones for
# the same bytes (about 50 ms per GET, whatever its size). 8 MiB measured as fast as 16 MiB, in 60 MB less.
STREAM_CHUNK_BYTES = 8 * 1024 * 1024
# A batch's staged blob is uploaded in blocks of this size, this many at once (`put_buffers`), whatever the
# number of partitions. Measured with a 13 MB POST of 50,000 events through the API on Azurite: 2, 4, 8 and
# 16 MiB blocks, 2 to 8 at once, all cost Azurite about 0.1 s of CPU and the app about 0.35 s per POST (the
# wall times were within the machine's noise); 4 MiB x 4 keeps a large body's blocks in flight together on
# Azure, where they are uploaded in parallel, in 13 calls per POST against 10 with 16 MiB blocks.
STAGE_BLOCK_BYTES = 4 * 1024 * 1024
STAGE_CONCURRENCY = 4
# Connections kept open to control storage. requests keeps 10 per host by default: with intake requests, export
# tasks and their members' writes at once, more than 10 are in flight and each one over 10 paid a new
# connection (and Azurite a new socket) per request.
POOL_CONNECTIONS = 64
# Small control writes that do not depend on each other (a batch's index markers) go out this many at once,
# from one pool shared by every request of the process.
SMALL_WRITES_AT_ONCE = 16
# The most deletes one Blob Batch request carries (the service's limit).
BATCH_DELETES = 256
# What requests reads from the environment on every request when a session trusts it: proxies, CA bundles and
# ~/.netrc. Looking for ~/.netrc (several stat calls a request) cost 10-20% of intake's and the export's CPU,
# measured with py-spy over 500 small batches. So the environment is read once: a proxy setting leaves it to
# requests as before, a CA bundle alone is handed to the SDK (`http_options`), and ~/.netrc is never used.
READ_BLOCK_BYTES = 256 * 1024  # what a response body is read in: the storage SDK's own transport's size
PROXY_SETTINGS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
CA_BUNDLE_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # in the order requests reads them
_small_writes = ThreadPoolExecutor(max_workers=SMALL_WRITES_AT_ONCE, thread_name_prefix="control-write")


class PreconditionFailed(Exception):
    """The document changed since it was read (ETag mismatch) or already exists."""


class LeaseHeld(Exception):
    """Another worker holds the lease on this document."""


@dataclass(frozen=True)
class Document:
    data: dict[str, Any]
    etag: str


@dataclass(frozen=True)
class Listed:
    name: str
    metadata: dict[str, str]
    modified: datetime | None = None


def build_control_container(settings: Settings) -> ContainerClient:
    """The control container client, with explicit timeouts and retries (one place builds it)."""
    options: dict[str, Any] = {
        "transport": pooled_transport(POOL_CONNECTIONS, connection_timeout=10,
                                      read_timeout=settings.request_timeout_seconds),
        "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3),
        "max_single_get_size": STREAM_CHUNK_BYTES,
        "max_chunk_get_size": STREAM_CHUNK_BYTES,
    }
    if settings.control_storage_account_url:
        from azure.identity import DefaultAzureCredential

        service = BlobServiceClient(settings.control_storage_account_url, DefaultAzureCredential(), **options)
    else:
        service = BlobServiceClient.from_connection_string(str(settings.control_storage_connection), **options)
    return service.get_container_client(settings.control_container)


def _environment(name: str) -> str | None:
    return os.environ.get(name) or os.environ.get(name.lower()) or None


def http_options() -> dict[str, Any]:
    """Storage clients' HTTP settings from the environment, read once: with a proxy set, requests reads the
    environment on every request as before (azure-core's `use_env_settings`); otherwise not, and a CA bundle
    set in it is given as `connection_verify`."""
    if any(_environment(name) for name in PROXY_SETTINGS):
        return {"use_env_settings": True}
    bundle = next((value for value in map(_environment, CA_BUNDLE_SETTINGS) if value), None)
    return {"use_env_settings": False, **({"connection_verify": bundle} if bundle else {})}


class PoolKeyCachingAdapter(BiggerBlockSizeHTTPAdapter):
    """The SDK's adapter, working out a connection pool's key once per host rather than on every request: with a
    CA bundle given as a path, requests asks the file system whether it is a folder each time (a stat call and
    a release of the GIL per request, 6% of the export's samples under py-spy). The key depends on the URL's
    scheme, host and port, the bundle and the client certificate only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool_keys: dict[tuple[Any, ...], tuple[dict[str, Any], dict[str, Any]]] = {}

    def build_connection_pool_key_attributes(self, request: Any, verify: Any,
                                             cert: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        url = urlsplit(request.url)
        key = (url.scheme.lower(), url.hostname, url.port, verify, cert)
        found = self._pool_keys.get(key)
        if found is None:
            found = self._pool_keys.setdefault(key, super().build_connection_pool_key_attributes(request, verify, cert))
        return dict(found[0]), dict(found[1])


class DirectSession(Session):
    """A requests session that sends what azure-core asks for straight to its adapter. azure-core hands requests
    a complete request (its URL quoted, its headers and body set) and does redirects, retries and authentication
    itself; a `Session.request` then merges session settings, cookies, hooks and the environment into it and
    parses the URL again, which cost about a quarter of the CPU of a small storage request (0.3 of 1.35 ms,
    measured on Azurite). Here the request is prepared from what was given (headers checked as requests checks
    them, the body sized as it sizes it), sent by the adapter, and read whole unless streamed, as `Session.send`
    does. Cookies are neither kept nor sent (storage sets none; a destination's endpoint cannot plant one).
    Anything else asked of it (a proxy, redirects, files, a URL that is not ASCII) goes the ordinary way."""

    DIRECT_KEYWORDS = frozenset({"headers", "data", "verify", "timeout", "cert", "stream", "allow_redirects",
                                 "proxies", "files"})  # what azure-core's transport passes

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Response:
        if (args or self.trust_env or not isinstance(url, str) or not url.isascii()
                or not self.DIRECT_KEYWORDS.issuperset(kwargs)
                or kwargs.get("allow_redirects", True) or kwargs.get("proxies") or kwargs.get("files")):
            return super().request(method, url, *args, **kwargs)
        prepared = PreparedRequest()
        prepared.method = method.upper()
        prepared.url = url
        prepared.prepare_headers(kwargs.get("headers"))
        prepared.prepare_body(kwargs.get("data"), None)
        prepared.hooks = {"response": []}
        stream = bool(kwargs.get("stream"))
        verify = kwargs.get("verify")
        response = self.get_adapter(url).send(prepared, stream=stream, timeout=kwargs.get("timeout"),
                                              verify=True if verify is None else verify, cert=kwargs.get("cert"),
                                              proxies={})
        if not stream:
            response.content  # noqa: B018 - read whole, the connection goes back to the pool (as Session.send)
        return response


def pooled_transport(connections: int, *, connection_timeout: float = 20, read_timeout: float = 60,
                     **overrides: Any) -> RequestsTransport:
    """The SDK's own transport over a session that keeps `connections` connections per host open (the SDK's
    adapter and its settings: no retries of its own, the pipeline's retry policy does that). A client given a
    transport does not pass its own timeouts or read size on to it: they are the transport's (the defaults are
    the storage SDK's own transport's; azure-core's would wait 300 s and read 4 KiB at a time). `overrides`:
    transport settings over the environment's (e.g. `connection_verify`, a private CA's bundle)."""
    options = {**http_options(), **overrides}
    trust_env = options.pop("use_env_settings")
    session = Session() if trust_env else DirectSession()
    session.trust_env = trust_env
    adapter = PoolKeyCachingAdapter(pool_connections=connections, pool_maxsize=connections,
                                    max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return RequestsTransport(session=session, session_owner=False, connection_timeout=connection_timeout,
                             read_timeout=read_timeout, connection_data_block_size=READ_BLOCK_BYTES, **options)


def unavailable(exc: Exception) -> ServiceUnavailable:
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return ServiceUnavailable(f"control storage is unreachable or failing ({reason}); nothing was changed, retry later")


def as_unavailable(exc: Exception) -> Exception:
    """No answer, or a 5xx answer: control storage is failing (503 to callers). Anything else as it is."""
    if isinstance(exc, HttpResponseError) and not (exc.status_code or 0) >= 500:
        return exc
    return unavailable(exc)


class ControlStore:
    """JSON documents by name, plus raw blobs for staged records."""

    def __init__(self, container: ContainerClient):
        self.container = container
        self._ready = False
        self._lock = threading.Lock()

    def ensure_container(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                self.container.create_container()
            except ResourceExistsError:
                pass
            except (ServiceRequestError, ServiceResponseError, HttpResponseError) as exc:
                raise as_unavailable(exc) from None
            self._ready = True

    def get(self, name: str, *, lease: str | None = None) -> Document | None:
        self.ensure_container()
        try:
            downloader = self.container.download_blob(name, lease=lease)
            body = downloader.readall()
        except ResourceNotFoundError:
            return None
        except (ServiceRequestError, ServiceResponseError, HttpResponseError) as exc:
            raise as_unavailable(exc) from None
        return Document(orjson.loads(body), downloader.properties.etag)

    def put(
        self,
        name: str,
        data: dict[str, Any],
        *,
        etag: str | None = None,
        create_only: bool = False,
        lease: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Write a document; with `etag` or `create_only` the write is conditional. Returns the new ETag."""
        self.ensure_container()
        kwargs: dict[str, Any] = {"overwrite": True, "content_settings": JSON_CONTENT, "metadata": metadata}
        if create_only:
            kwargs["if_none_match"] = "*"
        elif etag is not None:
            kwargs["etag"] = etag
            from azure.core import MatchConditions

            kwargs["match_condition"] = MatchConditions.IfNotModified
        if lease is not None:
            kwargs["lease"] = lease
        try:
            result = self.container.get_blob_client(name).upload_blob(orjson.dumps(data), **kwargs)
        except (ResourceModifiedError, ResourceExistsError):
            raise PreconditionFailed(name) from None
        except HttpResponseError as exc:
            if exc.status_code == 412 and getattr(exc, "error_code", "") in {"LeaseIdMissing", "LeaseIdMismatch"}:
                raise LeaseHeld(name) from None
            if exc.status_code == 412 or exc.status_code == 409:
                raise PreconditionFailed(name) from None
            if exc.status_code and exc.status_code >= 500:
                raise unavailable(exc) from None
            raise
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise unavailable(exc) from None
        return str(result["etag"])

    def put_bytes(self, name: str, data: bytes, *, metadata: dict[str, str] | None = None) -> None:
        self.ensure_container()
        try:
            self.container.upload_blob(name, data, overwrite=True, metadata=metadata)
        except (ServiceRequestError, ServiceResponseError, HttpResponseError) as exc:
            raise as_unavailable(exc) from None

    def put_markers(self, markers: Iterable[tuple[str, dict[str, str] | None]]) -> None:
        """Write empty blobs (name, metadata) at once; each is written whatever the others' outcome, and the
        first failure is raised once all are done."""
        self._all_at_once([partial(self.put_bytes, name, b"", metadata=metadata) for name, metadata in markers])

    def delete_all(self, names: Iterable[str]) -> None:
        """Delete blobs (a name already gone is no error): several in one Blob Batch request per BATCH_DELETES
        names (a coalesced run's members leave their open markers together), one on its own with a plain delete.
        The first failure is raised once all are done."""
        names = builtins.list(names)
        if len(names) <= 1:
            for name in names:
                self.delete(name)
            return
        self.ensure_container()
        chunks = [names[at:at + BATCH_DELETES] for at in range(0, len(names), BATCH_DELETES)]
        self._all_at_once([partial(self._delete_batch, chunk) for chunk in chunks])

    def _delete_batch(self, names: Sequence[str]) -> None:
        try:
            answers = builtins.list(self.container.delete_blobs(*names, raise_on_any_failure=False))
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise as_unavailable(exc) from None
        except HttpResponseError:  # the batch itself refused (a storage account without Blob Batch): one by one
            for name in names:
                self.delete(name)
            return
        failed = next(((name, answer) for name, answer in zip(names, answers, strict=True)
                       if answer.status_code not in (202, 404)), None)
        if failed is not None:
            name, answer = failed
            raise as_unavailable(HttpResponseError(
                message=f"deleting {name} failed: {answer.status_code} {answer.reason}", response=answer))

    @staticmethod
    def _all_at_once(calls: Sequence[Callable[[], object]]) -> None:
        if len(calls) <= 1:
            for call in calls:
                call()
            return
        futures = [_small_writes.submit(call) for call in calls]
        errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def put_buffers(self, name: str, buffers: Sequence[bytes]) -> int:
        """Write the buffers end to end as one blob, without joining them (`shared.control.buffer_upload`);
        return the storage calls it took. The blob appears whole, or not at all."""
        self.ensure_container()
        try:
            return upload_buffers(self.container.get_blob_client(name), buffers, block_bytes=STAGE_BLOCK_BYTES,
                                  concurrency=STAGE_CONCURRENCY)
        except (ServiceRequestError, ServiceResponseError, HttpResponseError) as exc:
            raise as_unavailable(exc) from None

    def delete(self, name: str, *, lease: str | None = None) -> bool:
        self.ensure_container()
        try:
            self.container.delete_blob(name, lease=lease)
        except ResourceNotFoundError:
            return False
        except (ServiceRequestError, ServiceResponseError, HttpResponseError) as exc:
            raise as_unavailable(exc) from None
        return True

    def list(self, prefix: str, *, with_metadata: bool = False) -> Iterator[Listed]:
        self.ensure_container()
        include = ["metadata"] if with_metadata else None
        try:
            for item in self.container.list_blobs(name_starts_with=prefix, include=include):
                yield Listed(item.name, dict(item.metadata or {}), item.last_modified)
        except (ServiceRequestError, ServiceResponseError, HttpResponseError) as exc:
            raise as_unavailable(exc) from None

    def list_page(
        self, prefix: str, *, page_size: int, continuation: str | None
    ) -> tuple[builtins.list[Listed], str | None]:
        self.ensure_container()
        pages = self.container.list_blobs(
            name_starts_with=prefix, include=["metadata"], results_per_page=page_size
        ).by_page(continuation_token=continuation)
        try:
            page = next(pages)
            items = [Listed(item.name, dict(item.metadata or {}), item.last_modified) for item in page]
        except StopIteration:
            return [], None
        except (ServiceRequestError, ServiceResponseError, HttpResponseError) as exc:
            raise as_unavailable(exc) from None
        return items, pages.continuation_token  # type: ignore[attr-defined]

    def stream(self, name: str, offset: int | None = None, length: int | None = None) -> Iterator[bytes]:
        """Download a blob, or `length` bytes of it from `offset`, as a stream of chunks (memory bounded by the
        client's STREAM_CHUNK_BYTES). A range that starts past the blob's end is no bytes, not an error: the
        caller checks what it read against what it expected."""
        try:
            downloader = self.container.download_blob(name, offset=offset, length=length, max_concurrency=1)
        except HttpResponseError as exc:
            if offset is not None and exc.status_code == 416:  # InvalidRange: the blob is shorter than that
                return
            raise
        yield from downloader.chunks()
