"""Page cursors: the `next` of a listing, opaque to the caller.

A listing's place is storage's continuation token and the prefix it was read under; both are storage's
business (Azurite's token is a blob name, Azure's one encoded). The cursor seals them with AES-GCM under a
key kept in control storage, and binds them to the listing and its filters (the associated data): a cursor
is readable only by this app, cannot be edited, and is refused (422) by another listing or other filters
instead of silently starting over or reading another listing's place.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from dataclasses import dataclass
from threading import Lock

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.control.store import ControlStore, PreconditionFailed
from shared.errors import ValidationFailed

KEY_BLOB = "keys/cursors.json"
MAX_CURSOR_CHARS = 4096
_NONCE_BYTES = 12
_keys: dict[str, bytes] = {}  # by control container URL: read once per process
_keys_lock = Lock()


@dataclass(frozen=True)
class Place:
    """Where a listing goes on: the prefix it reads and storage's token for the next page (and, for a listing
    that merges two, the last key it gave out)."""

    prefix: str
    token: str
    after: str | None = None


def seal(control: ControlStore, place: Place | None, listing: str) -> str | None:
    """The cursor for `place` in `listing` (its name and filters, e.g. "batches?state=failed"); None at the end."""
    if place is None:
        return None
    nonce = os.urandom(_NONCE_BYTES)
    plain = orjson.dumps({"p": place.prefix, "t": place.token, **({"a": place.after} if place.after else {})})
    sealed = AESGCM(_key(control)).encrypt(nonce, plain, listing.encode())
    return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()


def unseal(control: ControlStore, cursor: str | None, listing: str) -> Place | None:
    """The place a cursor of `listing` holds; None for the first page. Anything this listing never gave out
    (edited, of another listing or other filters, or from before the key changed) is a 422."""
    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
        raise not_a_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        plain = AESGCM(_key(control)).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], listing.encode())
        data = orjson.loads(plain)
        return Place(prefix=str(data["p"]), token=str(data["t"]), after=str(data["a"]) if "a" in data else None)
    except (binascii.Error, ValueError, InvalidTag, KeyError, TypeError):
        raise not_a_cursor() from None


def not_a_cursor() -> ValidationFailed:
    message = ("next must be the 'next' value of an earlier page of this same listing (same filters), passed back "
               "unchanged; leave it out to start from the first page")
    return ValidationFailed(message, details=[{"field": "next", "message": message}])


def _key(control: ControlStore) -> bytes:
    where = control.container.url
    with _keys_lock:
        if where not in _keys:
            _keys[where] = _read_or_create_key(control)
        return _keys[where]


def _read_or_create_key(control: ControlStore) -> bytes:
    """The key in control storage; the first instance to need one writes it (create-only: one key wins)."""
    doc = control.get(KEY_BLOB)
    if doc is None:
        with contextlib.suppress(PreconditionFailed):  # another instance wrote it first: read theirs
            control.put(KEY_BLOB, {"aes_gcm_key": base64.b64encode(AESGCM.generate_key(256)).decode()},
                        create_only=True)
        doc = control.get(KEY_BLOB)
        assert doc is not None
    return base64.b64decode(doc.data["aes_gcm_key"])
