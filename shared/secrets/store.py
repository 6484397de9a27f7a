"""What a secret store is (`SecretStore`) and how it fails (`SecretStoreError` and its kinds).

Every store raises these errors, whatever holds the secrets: the message is plain words and never holds a value;
names and vault URLs are fine. Implementations: `keyvault` (Azure), `local_store` (development only); `cache`
sits in front; `factory` picks one.
"""

from __future__ import annotations

from typing import Protocol


class SecretStoreError(Exception):
    """A secret could not be read, written or deleted. The message is plain words and never holds a value."""

    retryable = False


class SecretNotFoundError(SecretStoreError):
    """The secret does not exist (deleted, or never written)."""


class SecretAccessDeniedError(SecretStoreError):
    """The app's identity may not use the secret, or could not authenticate at all. An operator must act."""


class SecretStoreUnavailableError(SecretStoreError):
    """The store could not be reached or failed on its side; waiting and retrying may fix it."""

    retryable = True


class SecretNameInUseError(SecretStoreError):
    """The name belongs to a recently deleted, still recoverable secret: recover or purge it first."""


class SecretStore(Protocol):
    def get_secret(self, name: str) -> str: ...

    def set_secret(self, name: str, value: str) -> None: ...

    def delete_secret(self, name: str) -> None:
        """Delete the secret; a secret that is already gone is not an error."""
        ...
