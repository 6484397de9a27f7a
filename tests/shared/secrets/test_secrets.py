"""Secrets: the real SecretClient and a real ClientSecretCredential against a local TLS fake of Key Vault and
Entra ID; the development-only local store; the TTL cache. No secret value may reach a message or a log."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import stat
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.identity import ClientSecretCredential

from shared.secrets.cache import CachedSecrets
from shared.secrets.factory import build_secret_store
from shared.secrets.keyvault import KeyVaultSecretStore
from shared.secrets.local_store import LocalSecretStore
from shared.secrets.names import is_app_secret_name, is_own_secret_name, new_secret_name
from shared.secrets.store import (
    SecretAccessDeniedError,
    SecretNotFoundError,
    SecretStoreError,
    SecretStoreUnavailableError,
)
from shared.settings import Settings, load_settings
from tests.support import keyvault
from tests.support.keyvault import CLIENT_ID, CLIENT_SECRET, TENANT_ID, FakeKeyVault

# The fake vault's fixtures, for as long as tests/conftest.py does not load tests.support.keyvault as a plugin.
key_vault_tls = keyvault.key_vault_tls
key_vault_server = keyvault.key_vault_server
fake_key_vault = keyvault.fake_key_vault
key_vault_store = keyvault.key_vault_store

NAME = "export-dest-3f2a9c"
VALUE = '{"sas_token": "sv=2025-01-05&sp=rw&sig=VERY-SECRET-SIGNATURE%3D"}'
ROTATED = '{"sas_token": "sv=2025-01-05&sp=rw&sig=ROTATED-SECRET-SIGNATURE%3D"}'


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture everything, azure SDK debug logs included, and check afterwards that no secret leaked into them."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    for secret in (VALUE, ROTATED, CLIENT_SECRET, "VERY-SECRET-SIGNATURE", "ROTATED-SECRET-SIGNATURE"):
        assert secret not in caplog.text


def exception_text(exc: BaseException) -> str:
    """What a traceback in a log would show: the message and the whole cause chain."""
    return "".join(traceback.format_exception(exc))


def assert_no_secret_in(exc: BaseException) -> None:
    text = exception_text(exc)
    for secret in (VALUE, ROTATED, CLIENT_SECRET, "SECRET-SIGNATURE"):
        assert secret not in text


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Key Vault ------------------------------------------------------------------------------------------------


def test_set_then_get_answers_the_challenge_with_a_real_token(fake_key_vault: FakeKeyVault) -> None:
    store = fake_key_vault.secret_store()

    store.set_secret(NAME, VALUE)
    assert store.get_secret(NAME) == VALUE

    assert fake_key_vault.value_of(NAME) == VALUE
    first, second, third = fake_key_vault.requests
    assert (first.method, first.path, first.authorization) == ("PUT", f"/secrets/{NAME}", None)
    assert second.method == "PUT"
    assert second.authorization is not None
    assert second.authorization.startswith("Bearer ey")  # a JWT issued by the fake Entra ID
    assert (third.method, third.authorization) == ("GET", second.authorization)  # token and challenge reused
    [token_request] = fake_key_vault.token_requests
    assert token_request["grant_type"] == "client_credentials"
    assert token_request["scope"] == "https://vault.azure.net/.default"


def test_missing_secret_is_not_found_with_a_message_naming_it(key_vault_store: KeyVaultSecretStore) -> None:
    with pytest.raises(SecretNotFoundError) as caught:
        key_vault_store.get_secret("export-dest-gone")

    message = str(caught.value)
    assert "secret 'export-dest-gone' was not found in Key Vault https://localhost:" in message
    assert "update the destination's credentials" in message


def test_forbidden_names_the_role_to_grant(fake_key_vault: FakeKeyVault) -> None:
    store = fake_key_vault.secret_store()
    fake_key_vault.forbidden = True

    with pytest.raises(SecretAccessDeniedError) as read:
        store.get_secret(NAME)
    with pytest.raises(SecretAccessDeniedError) as write:
        store.set_secret(NAME, VALUE)

    assert f"not allowed to read secret '{NAME}' in Key Vault {fake_key_vault.url} (403 Forbidden)" in str(read.value)
    assert "'Key Vault Secrets Officer' role" in str(read.value)
    assert "not allowed to write secret" in str(write.value)
    assert_no_secret_in(write.value)


def test_rejected_token_is_access_denied(fake_key_vault: FakeKeyVault) -> None:
    fake_key_vault.reject_tokens = True

    with pytest.raises(SecretAccessDeniedError, match=r"\(401 Unauthorized\).*tenant"):
        fake_key_vault.secret_store().get_secret(NAME)


def test_credential_that_cannot_get_a_token_is_access_denied(fake_key_vault: FakeKeyVault) -> None:
    wrong_secret = "wrong-client-secret-Qx7~"
    store = KeyVaultSecretStore(
        fake_key_vault.url, fake_key_vault.credential(client_secret=wrong_secret), **fake_key_vault.client_kwargs()
    )

    with pytest.raises(SecretAccessDeniedError, match="could not get a token") as caught:
        store.set_secret(NAME, VALUE)

    assert wrong_secret not in exception_text(caught.value)
    assert_no_secret_in(caught.value)
    assert fake_key_vault.value_of(NAME) is None


def test_unreachable_vault_is_unavailable_and_fast() -> None:
    port = closed_port()
    # The challenge request fails before any token is asked for, so the credential never reaches its authority.
    credential = ClientSecretCredential(
        TENANT_ID, CLIENT_ID, CLIENT_SECRET, authority=f"https://localhost:{port}", disable_instance_discovery=True
    )
    store = KeyVaultSecretStore(f"https://localhost:{port}", credential, retry_total=0, connection_timeout=2)
    started = time.monotonic()

    with pytest.raises(SecretStoreUnavailableError, match=r"Key Vault https://localhost:\d+ could not be reached"):
        store.get_secret(NAME)

    assert time.monotonic() - started < 5


def test_server_error_is_unavailable(fake_key_vault: FakeKeyVault) -> None:
    store = fake_key_vault.secret_store()
    store.set_secret(NAME, VALUE)
    fake_key_vault.outage_status = 503

    with pytest.raises(SecretStoreUnavailableError, match="answered 503") as caught:
        store.get_secret(NAME)

    assert caught.value.retryable is True


def test_delete_starts_soft_delete_and_ignores_missing(fake_key_vault: FakeKeyVault) -> None:
    store = fake_key_vault.secret_store()
    store.set_secret(NAME, VALUE)

    store.delete_secret(NAME)
    store.delete_secret(NAME)  # already gone: no error

    assert fake_key_vault.is_deleted(NAME)
    assert not any(r.path.startswith("/deletedsecrets/") for r in fake_key_vault.requests)  # did not wait
    with pytest.raises(SecretNotFoundError):
        store.get_secret(NAME)


def test_reusing_a_soft_deleted_name_says_what_to_do(fake_key_vault: FakeKeyVault) -> None:
    store = fake_key_vault.secret_store()
    store.set_secret(NAME, VALUE)
    store.delete_secret(NAME)

    with pytest.raises(SecretStoreError, match="recover or purge the deleted secret") as caught:
        store.set_secret(NAME, ROTATED)

    assert_no_secret_in(caught.value)


def test_invalid_name_is_refused_before_any_request(fake_key_vault: FakeKeyVault) -> None:
    with pytest.raises(ValueError, match="not a valid Key Vault secret name"):
        fake_key_vault.secret_store().get_secret("export_dest/1")
    assert fake_key_vault.requests == []


def test_secret_client_is_created_once_and_reused(fake_key_vault: FakeKeyVault) -> None:
    store = fake_key_vault.secret_store()
    store.set_secret(NAME, VALUE)
    store.get_secret(NAME)
    store.get_secret(NAME)

    assert len(fake_key_vault.token_requests) == 1
    assert sum(1 for r in fake_key_vault.requests if r.authorization is None) == 1


# --- Cache ----------------------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cached(fake_key_vault: FakeKeyVault, clock: FakeClock) -> CachedSecrets:
    fake_key_vault.put_secret(NAME, VALUE)
    return CachedSecrets(fake_key_vault.secret_store(), ttl_seconds=300, clock=clock)


def test_second_get_within_ttl_does_not_reach_the_vault(cached: CachedSecrets, fake_key_vault: FakeKeyVault) -> None:
    assert cached.get(NAME) == VALUE
    reads = fake_key_vault.get_count
    assert cached.get(NAME) == VALUE

    assert fake_key_vault.get_count == reads
    assert cached.store_reads == 1


def test_rotated_secret_is_picked_up_after_ttl(
    cached: CachedSecrets, fake_key_vault: FakeKeyVault, clock: FakeClock
) -> None:
    assert cached.get(NAME) == VALUE
    fake_key_vault.put_secret(NAME, ROTATED)

    clock.advance(299)
    assert cached.get(NAME) == VALUE
    clock.advance(1)
    assert cached.get(NAME) == ROTATED
    assert cached.store_reads == 2


def test_invalidate_forces_a_reread(cached: CachedSecrets, fake_key_vault: FakeKeyVault) -> None:
    cached.get(NAME)
    fake_key_vault.put_secret(NAME, ROTATED)
    reads = fake_key_vault.get_count

    cached.invalidate(NAME)

    assert cached.get(NAME) == ROTATED
    assert fake_key_vault.get_count == reads + 1
    assert cached.store_reads == 2


def test_set_writes_through_and_delete_forgets(cached: CachedSecrets, fake_key_vault: FakeKeyVault) -> None:
    cached.set(NAME, ROTATED)
    assert fake_key_vault.value_of(NAME) == ROTATED
    assert cached.get(NAME) == ROTATED
    assert cached.store_reads == 0

    cached.delete(NAME)
    with pytest.raises(SecretNotFoundError):
        cached.get(NAME)
    assert cached.store_reads == 1


def test_concurrent_misses_share_one_vault_read(cached: CachedSecrets, fake_key_vault: FakeKeyVault) -> None:
    results: list[str] = []
    start = threading.Barrier(8)

    def read() -> None:
        start.wait()
        results.append(cached.get(NAME))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [VALUE] * 8
    assert cached.store_reads == 1
    assert sum(1 for r in fake_key_vault.requests if r.method == "GET" and r.authorization) == 1


def test_zero_ttl_always_reads(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path / "dev-secrets.json")
    store.set_secret(NAME, VALUE)
    cached = CachedSecrets(store, ttl_seconds=0)

    cached.get(NAME)
    cached.get(NAME)

    assert cached.store_reads == 2


# --- Local development store ----------------------------------------------------------------------------------


def test_local_store_round_trip_with_owner_only_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / ".local" / "dev-secrets.json"
    store = LocalSecretStore(path)

    store.set_secret(NAME, VALUE)

    assert store.get_secret(NAME) == VALUE
    assert LocalSecretStore(path).get_secret(NAME) == VALUE  # persisted, another instance reads it
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["dev-secrets.json"]  # no temp files left behind
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name.startswith("shared.secrets")]
    assert warnings
    assert "development-only and unencrypted" in warnings[0]
    assert "KEY_VAULT_URL" in warnings[0]


def test_local_store_missing_secret_and_delete(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path / "dev-secrets.json")
    store.set_secret(NAME, VALUE)

    store.delete_secret(NAME)
    store.delete_secret(NAME)

    with pytest.raises(SecretNotFoundError, match=f"secret '{NAME}' was not found in the local development secret"):
        store.get_secret(NAME)


def test_local_store_tightens_a_world_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "dev-secrets.json"
    path.write_text(json.dumps({"secrets": {NAME: VALUE}}))
    os.chmod(path, 0o644)

    assert LocalSecretStore(path).get_secret(NAME) == VALUE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_local_file_error_does_not_quote_it(tmp_path: Path) -> None:
    path = tmp_path / "dev-secrets.json"
    path.write_text('{"secrets": {"' + NAME + '": "' + "VERY-SECRET-SIGNATURE" + '" ')  # truncated JSON
    store = LocalSecretStore(path)

    with pytest.raises(SecretStoreError, match="is not valid JSON") as caught:
        store.get_secret(NAME)

    assert_no_secret_in(caught.value)


def test_local_store_parallel_writers_lose_nothing(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path / "dev-secrets.json")
    names = [new_secret_name(f"d{i}") for i in range(16)]
    threads = [threading.Thread(target=store.set_secret, args=(name, VALUE)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(store.get_secret(name) == VALUE for name in names)


# --- Factory and names ----------------------------------------------------------------------------------------


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_vault_url: str | None) -> Settings:
    monkeypatch.delenv("KEY_VAULT_URL", raising=False)
    return load_settings(
        control_storage_connection="UseDevelopmentStorage=true",
        key_vault_url=key_vault_url,
        local_secrets_path=tmp_path / ".local" / "dev-secrets.json",
    )


def test_without_key_vault_url_the_local_store_is_used_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = build_secret_store(_settings(tmp_path, monkeypatch, None))

    assert isinstance(store, LocalSecretStore)
    assert store.path == tmp_path / ".local" / "dev-secrets.json"
    assert "development-only" in caplog.text


def test_with_key_vault_url_key_vault_is_used(
    fake_key_vault: FakeKeyVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, monkeypatch, fake_key_vault.url)

    store = build_secret_store(settings, fake_key_vault.credential(), **fake_key_vault.client_kwargs())
    store.set_secret(NAME, VALUE)

    assert isinstance(store, KeyVaultSecretStore)
    assert fake_key_vault.value_of(NAME) == VALUE
    assert not (tmp_path / ".local").exists()


@pytest.mark.parametrize("destination_id", ["3f2a9c", "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "a" * 102])
def test_new_secret_name_is_the_destinations_own_and_new_each_time(destination_id: str) -> None:
    first, second = new_secret_name(destination_id), new_secret_name(destination_id)
    assert first != second
    for name in (first, second):
        assert re.fullmatch(rf"export-dest-{destination_id}-[0-9a-f]{{12}}", name)
        assert is_app_secret_name(name) and is_own_secret_name(name, destination_id)
        assert not is_own_secret_name(name, destination_id + "x")
    assert is_own_secret_name(f"export-dest-{destination_id}", destination_id)  # the older, fixed name
    assert is_app_secret_name(f"EXPORT-DEST-{destination_id}")  # Key Vault names ignore case
    assert not is_app_secret_name(f"customer-{destination_id}")


@pytest.mark.parametrize("destination_id", ["", "has_underscore", "has/slash", "dots.too", "a" * 103])
def test_new_secret_name_refuses_what_key_vault_would(destination_id: str) -> None:
    with pytest.raises(ValueError, match="cannot name a Key Vault secret"):
        new_secret_name(destination_id)
