"""Standard Webhooks signatures (https://www.standardwebhooks.com): the signing secret, and the three headers.

    webhook-id         the alert's id, the same on every retry (receivers drop a second delivery of one id)
    webhook-timestamp  seconds since the epoch, of this attempt (receivers refuse old ones: a replay)
    webhook-signature  "v1," + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))

The secret is `whsec_` + base64 of its key bytes, kept in the secret store as ALERT_SIGNING_SECRET and created
there on first use (an operator may create it beforehand; the README says how to read it to verify alerts).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as pyrandom

from shared.secrets.cache import CachedSecrets
from shared.secrets.names import ALERT_SIGNING_SECRET
from shared.secrets.store import SecretNotFoundError

SECRET_PREFIX = "whsec_"
KEY_BYTES = 32  # Standard Webhooks asks for 24 to 64
MIN_KEY_BYTES = 24


class SigningSecretUnusable(ValueError):
    """The stored signing secret is not `whsec_` and base64 of 24-64 bytes (the message never quotes it)."""


def new_signing_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(pyrandom.token_bytes(KEY_BYTES)).decode()


def key_of(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret holds."""
    if not secret.startswith(SECRET_PREFIX):
        raise SigningSecretUnusable(f"the alert signing secret '{ALERT_SIGNING_SECRET}' does not start with "
                                    f"'{SECRET_PREFIX}'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise SigningSecretUnusable(f"the alert signing secret '{ALERT_SIGNING_SECRET}' is not base64 after "
                                    f"'{SECRET_PREFIX}'") from None
    if not MIN_KEY_BYTES <= len(key) <= 64:
        raise SigningSecretUnusable(f"the alert signing secret '{ALERT_SIGNING_SECRET}' holds {len(key)} bytes; "
                                    f"it needs {MIN_KEY_BYTES} to 64")
    return key


def signing_key(secrets: CachedSecrets) -> bytes:
    """The key from the secret store, the secret created first if it does not exist. After creating it, it is
    read back: if another instance created one at the same moment, the one the store kept is the one used."""
    try:
        return key_of(secrets.get(ALERT_SIGNING_SECRET))
    except SecretNotFoundError:
        pass
    secrets.set(ALERT_SIGNING_SECRET, new_signing_secret())
    secrets.invalidate(ALERT_SIGNING_SECRET)
    return key_of(secrets.get(ALERT_SIGNING_SECRET))


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(key, message_id, timestamp, body)}
