"""The names of Key Vault secrets: Key Vault's own rule, and the names the app gives the secrets it writes.

Control storage keeps only a secret's *name*; a destination may name no secret under `APP_SECRET_PREFIX` but its
own (see `is_own_secret_name`).
"""

from __future__ import annotations

import re
from secrets import token_hex

# Key Vault's own rule for secret names; the local store enforces it too so development matches Azure.
SECRET_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
# Every secret the app writes is named with this prefix; a destination may name no such secret but its own.
APP_SECRET_PREFIX = "export-dest-"
# Secrets the app keeps for itself, for no destination (issue 17: the alert webhooks' signing secret): no
# destination may name one either.
APP_OWN_PREFIX = "export-app-"
ALERT_SIGNING_SECRET = f"{APP_OWN_PREFIX}alert-signing"


def new_secret_name(destination_id: str) -> str:
    """A fresh Key Vault secret name for one save of a destination's credentials: `export-dest-{id}-{random}`.

    A name per save ties a destination record to the exact secret it was saved with: two concurrent saves
    never write the same secret, and a deleted destination can be re-created at once, while Key Vault still
    keeps the old, soft-deleted secret under its old name.
    """
    name = f"{APP_SECRET_PREFIX}{destination_id}-{token_hex(6)}"
    if not destination_id or not SECRET_NAME.match(name):
        limit = 127 - len(APP_SECRET_PREFIX) - 13
        raise ValueError(
            f"destination id {destination_id!r} cannot name a Key Vault secret: use 1 to {limit} letters, "
            "digits and hyphens"
        )
    return name


def is_app_secret_name(name: str) -> bool:
    """Whether the app writes secrets under this name (Key Vault names are case-insensitive)."""
    return name.lower().startswith((APP_SECRET_PREFIX, APP_OWN_PREFIX))


def is_own_secret_name(name: str, destination_id: str) -> bool:
    """Whether the app wrote `name` for this destination: `export-dest-{id}-{random}`, or the older
    `export-dest-{id}`. Only such a secret is deleted with its destination or replaced by a new save."""
    own = f"{APP_SECRET_PREFIX}{destination_id}"
    return name.lower() == own or re.fullmatch(rf"{re.escape(own)}-[0-9a-f]{{12}}", name.lower()) is not None


def check_secret_name(name: str) -> str:
    """Refuse names Key Vault would refuse, before any request (and in the local store too)."""
    if not SECRET_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid Key Vault secret name: use 1 to 127 letters, digits and hyphens")
    return name
