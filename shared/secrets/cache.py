"""The in-memory TTL cache in front of a secret store: at most one store read per name per TTL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shared import telemetry
from shared.secrets.store import SecretStore


class CachedSecrets:
    """An in-memory TTL cache in front of a SecretStore: at most one store read per name per TTL.

    Thread-safe. Concurrent misses for one name share a single store read. Failures are not cached.
    """

    def __init__(self, store: SecretStore, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, float]] = {}
        # Bumped by set/delete/invalidate so a read that was in flight meanwhile does not cache a stale value.
        self._generations: dict[str, int] = {}
        self._name_locks: dict[str, threading.Lock] = {}
        self._store_reads = 0

    @property
    def store_reads(self) -> int:
        """How many reads went to the store (the benchmark counts Key Vault reads per pass)."""
        return self._store_reads

    def get(self, name: str) -> str:
        with self._lock:
            cached = self._fresh(name)
            if cached is not None:
                return cached
            name_lock = self._name_locks.setdefault(name, threading.Lock())
        with name_lock:
            with self._lock:
                cached = self._fresh(name)
                if cached is not None:
                    return cached
                generation = self._generations.get(name, 0)
                self._store_reads += 1
            telemetry.secret_store_read()
            value = self.store.get_secret(name)
            with self._lock:
                if self._generations.get(name, 0) == generation:
                    self._entries[name] = (value, self._clock() + self._ttl)
            return value

    def set(self, name: str, value: str) -> None:
        try:
            self.store.set_secret(name, value)
        except BaseException:
            self.invalidate(name)  # the store may or may not hold the new value now
            raise
        with self._lock:
            self._bump(name)
            self._entries[name] = (value, self._clock() + self._ttl)

    def delete(self, name: str) -> None:
        try:
            self.store.delete_secret(name)
        finally:
            self.invalidate(name)

    def invalidate(self, name: str) -> None:
        """Forget a cached value, e.g. after a destination answered 401/403, so a rotated secret is read again."""
        with self._lock:
            self._bump(name)
            self._entries.pop(name, None)

    def _fresh(self, name: str) -> str | None:
        entry = self._entries.get(name)
        if entry is None or self._clock() >= entry[1]:
            return None
        return entry[0]

    def _bump(self, name: str) -> None:
        self._generations[name] = self._generations.get(name, 0) + 1
