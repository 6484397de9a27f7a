"""Fake Entra ID access tokens that say their audience, so a test can tell which audience reached whom.

The tokens are JWT-shaped (header.claims.signature, base64url) like real ones, unsigned in substance: nothing in
the tests verifies a signature, they only read the `aud` claim back with `audience_of`.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from typing import Any

STORAGE_RESOURCE = "https://storage.azure.com"
STORAGE_SCOPE = f"{STORAGE_RESOURCE}/.default"


def fake_access_token(audience: str, **claims: Any) -> str:
    """A JWT-shaped token for `audience` (a resource such as https://storage.azure.com, no /.default)."""
    now = int(time.time())

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    body = {"aud": audience, "iat": now, "nbf": now - 60, "exp": now + 3600, "jti": uuid.uuid4().hex, **claims}
    return f"{b64({'typ': 'JWT', 'alg': 'RS256'})}.{b64(body)}.{uuid.uuid4().hex}"


def audience_of(authorization: str | None) -> str | None:
    """The `aud` claim of the bearer token in an Authorization header (or a bare token); None if unreadable."""
    if not authorization:
        return None
    token = authorization.removeprefix("Bearer ").strip()
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    audience = claims.get("aud") if isinstance(claims, dict) else None
    return audience if isinstance(audience, str) else None
