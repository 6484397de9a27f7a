import pytest

from shared.settings import SettingsError, load_settings


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
