import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.local_server import free_port
from scripts.local_settings import REPO_ROOT, find_settings_file, read_values
from shared.settings import SettingsError, load_settings
from tests.scripts.local_env import local_env


def test_missing_storage_connection_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.delenv("CONTROL_STORAGE_CONNECTION", raising=False)
    with pytest.raises(SettingsError, match="AzureWebJobsStorage"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("KEY_VAULT_URL", "http://vault.example", "KEY_VAULT_URL"),
        ("MAX_ATTEMPTS", "zero", "MAX_ATTEMPTS"),
        ("LEASE_SECONDS", "5", "LEASE_SECONDS"),
        ("CONTROL_CONTAINER", "Bad_Name", "CONTROL_CONTAINER"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
    ],
)
def test_wrong_setting_is_named(monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("EXPORT_SCHEDULE", "0 */1 * * * *")
    monkeypatch.delenv("KEY_VAULT_URL", raising=False)
    s = load_settings()
    assert s.control_storage_connection == "UseDevelopmentStorage=true"
    assert s.export_schedule == "0 */1 * * * *"
    assert s.uses_local_secret_store
    assert s.control_container == "export-control"


def test_misconfigured_app_answers_503_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from scripts.local_server import ApiServer
    from shared import services as services_module
    from shared import settings as settings_module
    from shared.api.app import create_api

    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("MAX_ATTEMPTS", "-3")
    settings_module.get_settings.cache_clear()
    services_module.get_services.cache_clear()
    server = ApiServer(create_api(services_module.get_services))
    server.start()
    try:
        response = httpx.get(f"{server.base_url}/api/destinations", timeout=30)
    finally:
        server.stop()
        settings_module.get_settings.cache_clear()
        services_module.get_services.cache_clear()
    assert response.status_code == 503
    assert "MAX_ATTEMPTS" in response.json()["error"]["message"]


def test_identity_based_control_storage_needs_no_connection_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.delenv("CONTROL_STORAGE_CONNECTION", raising=False)
    monkeypatch.setenv("AzureWebJobsStorage__blobServiceUri", "https://ctl.blob.core.windows.net")
    assert load_settings().control_storage_account_url == "https://ctl.blob.core.windows.net"


# --- In Azure (issue 16): never the local secret store, never http:// loopback ---------------------------------

AZURE = [("WEBSITE_INSTANCE_ID", "3f1a0c2e9b7d"), ("WEBSITE_SKU", "FlexConsumption")]


@pytest.fixture
def azure_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBSITE_INSTANCE_ID", "WEBSITE_SKU", "KEY_VAULT_URL", "ALLOW_HTTP_LOOPBACK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AzureWebJobsStorage__blobServiceUri", "https://ctl.blob.core.windows.net")


@pytest.mark.parametrize(("marker", "value"), AZURE)
@pytest.mark.parametrize("vault", [None, "", "  "])
def test_in_azure_the_app_refuses_to_start_without_key_vault(
    monkeypatch: pytest.MonkeyPatch, azure_storage: None, marker: str, value: str, vault: str | None
) -> None:
    monkeypatch.setenv(marker, value)
    if vault is not None:
        monkeypatch.setenv("KEY_VAULT_URL", vault)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value) == (
        f"invalid app settings: KEY_VAULT_URL must be set when the app runs in Azure ({marker} is set): destination "
        "secrets are kept in Key Vault there, never in the local development secret store")


@pytest.mark.parametrize(("marker", "value"), AZURE)
def test_in_azure_the_app_refuses_to_start_with_http_loopback_allowed(
    monkeypatch: pytest.MonkeyPatch, azure_storage: None, marker: str, value: str
) -> None:
    monkeypatch.setenv(marker, value)
    monkeypatch.setenv("KEY_VAULT_URL", "https://acme-export-kv.vault.azure.net/")
    monkeypatch.setenv("ALLOW_HTTP_LOOPBACK", "true")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert "ALLOW_HTTP_LOOPBACK must not be true when the app runs in Azure" in message
    assert f"({marker} is set)" in message and "KEY_VAULT_URL" not in message


KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _account(name: str) -> str:
    return f"DefaultEndpointsProtocol=https;AccountName={name};AccountKey={KEY};EndpointSuffix=core.windows.net"


@pytest.mark.parametrize("host", [{"AzureWebJobsStorage": _account("fnhost")},
                                  {"AzureWebJobsStorage__queueServiceUri": "https://fnhost.queue.core.windows.net"}])
def test_in_azure_a_separate_control_account_is_refused_for_the_queue_trigger_would_not_see_its_messages(
    monkeypatch: pytest.MonkeyPatch, azure_storage: None, host: dict[str, str]
) -> None:
    """The export queue is in control storage's account and its trigger listens on AzureWebJobsStorage's."""
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "3f1a0c2e9b7d")
    monkeypatch.setenv("KEY_VAULT_URL", "https://acme-export-kv.vault.azure.net/")
    for name, value in host.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CONTROL_STORAGE_CONNECTION", _account("otherctl"))
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert "CONTROL_STORAGE_CONNECTION must name the account of AzureWebJobsStorage" in message
    assert "'otherctl'" in message and "'fnhost'" in message and KEY not in message

    monkeypatch.setenv("CONTROL_STORAGE_CONNECTION", _account("FNHOST"))  # the same account: the trigger sees them
    assert load_settings().control_storage_connection == _account("FNHOST")


@pytest.mark.parametrize(("marker", "value"), AZURE)
def test_in_azure_key_vault_without_loopback_starts(
    monkeypatch: pytest.MonkeyPatch, azure_storage: None, marker: str, value: str
) -> None:
    monkeypatch.setenv(marker, value)
    monkeypatch.setenv("KEY_VAULT_URL", "https://acme-export-kv.vault.azure.net/")
    monkeypatch.setenv("ALLOW_HTTP_LOOPBACK", "false")
    settings = load_settings()
    assert settings.key_vault_url == "https://acme-export-kv.vault.azure.net"
    assert not settings.allow_http_loopback and not settings.uses_local_secret_store


def test_outside_azure_the_local_store_and_loopback_stay_allowed(
    monkeypatch: pytest.MonkeyPatch, azure_storage: None
) -> None:
    monkeypatch.setenv("ALLOW_HTTP_LOOPBACK", "true")
    settings = load_settings()
    assert settings.uses_local_secret_store and settings.allow_http_loopback


def test_serve_refuses_to_start_in_azure_in_the_same_words(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`python -m scripts.serve` (the real process, with local.settings.json.example's values) refuses with the
    words the settings use, naming both settings: the example leaves KEY_VAULT_URL empty and allows loopback."""
    env = local_env(tmp_path, WEBSITE_INSTANCE_ID="3f1a0c2e9b7d", AZURITE_PORT=str(free_port()))
    for name in ("WEBSITE_SKU", "KEY_VAULT_URL", "ALLOW_HTTP_LOOPBACK"):
        env.pop(name, None)
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in {**read_values(find_settings_file()), **env}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "KEY_VAULT_URL must be set" in str(refused.value) and "ALLOW_HTTP_LOOPBACK must not" in str(refused.value)

    done = subprocess.run([sys.executable, "-m", "scripts.serve", "--port", str(free_port())], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"error: {refused.value} (from {find_settings_file().name} or the environment)" in done.stderr
    assert "API:" not in done.stdout  # it refused before serving anything
