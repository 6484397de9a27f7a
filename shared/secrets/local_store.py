"""DEVELOPMENT ONLY: destination secrets in an unencrypted local JSON file, for running without Key Vault.

Nothing here logs a secret value or puts one in an exception message; names and the file's path are fine.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from shared.secrets.names import check_secret_name
from shared.secrets.store import SecretNotFoundError, SecretStoreError

logger = logging.getLogger(__name__)

_LOCAL_FILE_NOTE = "DEVELOPMENT ONLY: unencrypted secrets. In Azure, set KEY_VAULT_URL to use Key Vault."


class LocalSecretStore:
    """DEVELOPMENT ONLY: secrets in an unencrypted JSON file readable only by its owner (0600).

    Thread-safe through a lock. Across processes, each write replaces the whole file atomically, so a reader
    never sees a torn file; two processes writing at the same moment can lose one update, acceptable locally.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._ensure_file()
        logger.warning(
            "USING THE LOCAL SECRET STORE %s: development-only and unencrypted; never use it in Azure. "
            "Set KEY_VAULT_URL to store destination secrets in Azure Key Vault.",
            self.path,
        )

    def get_secret(self, name: str) -> str:
        check_secret_name(name)
        with self._lock:
            secrets = self._read()
        if name not in secrets:
            raise SecretNotFoundError(
                f"secret '{name}' was not found in the local development secret store {self.path}: "
                "it may have been deleted; update the destination's credentials"
            )
        return secrets[name]

    def set_secret(self, name: str, value: str) -> None:
        check_secret_name(name)
        with self._lock:
            secrets = self._read()
            secrets[name] = value
            self._write(secrets)
        logger.info("stored secret %s in the local development secret store", name)

    def delete_secret(self, name: str) -> None:
        check_secret_name(name)
        with self._lock:
            secrets = self._read()
            if secrets.pop(name, None) is None:
                return
            self._write(secrets)
        logger.info("deleted secret %s from the local development secret store", name)

    def _ensure_file(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # O_EXCL: never truncate a file another process created a moment ago.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if self.path.stat().st_mode & 0o077:
                logger.warning("local secret store %s was readable by others; restricting it to its owner", self.path)
                os.chmod(self.path, 0o600)
            return
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"note": _LOCAL_FILE_NOTE, "secrets": {}}, handle)

    def _read(self) -> dict[str, str]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            # `from None`: the decode error carries the whole document, secrets included.
            raise SecretStoreError(
                f"the local secret store {self.path} is not valid JSON (line {exc.lineno}): fix or delete the file"
            ) from None
        secrets = document.get("secrets") if isinstance(document, dict) else None
        if not isinstance(secrets, dict):
            raise SecretStoreError(f"the local secret store {self.path} has no 'secrets' object: fix or delete it")
        return {str(key): str(value) for key, value in secrets.items()}

    def _write(self, secrets: dict[str, str]) -> None:
        # mkstemp creates the file 0600; os.replace makes the new content appear all at once.
        fd, temp_name = tempfile.mkstemp(prefix=".secrets-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"note": _LOCAL_FILE_NOTE, "secrets": secrets}, handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
