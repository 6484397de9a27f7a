"""Alert webhooks are endpoints the app sends to (issue 17), under the rules destination endpoints follow: in Azure
mode (ALLOW_HTTP_LOOPBACK false, as the app must run there) a destination's alerts.webhook_url on loopback, the
metadata address, a private network or plain http is a 422 naming the field that saves nothing; an
ALERT_WEBHOOK_URL like that, or a public name that resolves to a private address, is never sent to, and the
alert's status says why without quoting the URL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from shared.alerts.sweep import sweep_alerts
from shared.control.alerts_outbox import alert_blob, new_alert, raise_alert, read_alert
from shared.services import Services, build_services
from shared.settings import Settings, SettingsError
from tests.shared.alerts.receiver import Receiver, receiver
from tests.support import secret_watch
from tests.support.resolver import HostRoutes

IN_AZURE = {"allow_http_loopback": False, "managed_identity_accounts": ("acmeexports",)}
REFUSED = [
    "http://127.0.0.1:8080/hook", "https://127.0.0.1/hook", "https://localhost./hook", "https://[::1]/hook",
    "https://169.254.169.254/metadata/instance", "https://10.1.2.3/services/T0/B0/x", "https://192.168.0.10/x",
    "https://[::ffff:10.0.0.1]/x", "https://0x7f000001/x", "https://2130706433/x", "https://hooks.internal/x",
    "http://hooks.slack.com/services/T0/B0/x", "https://user:pw@hooks.slack.com/x", "ftp://hooks.slack.com/x",
    "https://hooks.slack.com/x#fragment", "https://hooks.slack.com/ spaced", "not a url",
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=IN_AZURE)


def destination(webhook: str) -> dict[str, object]:
    return {"account_name": "acmeexports", "container": "exports", "auth": {"type": "managed_identity"},
            "alerts": {"webhook_url": webhook}}


@pytest.mark.parametrize("webhook", REFUSED)
def test_an_alert_url_the_endpoint_rules_refuse_is_a_422_naming_the_field_and_saves_nothing(
        api: httpx.Client, services: Services, webhook: str) -> None:
    secret_watch.register(webhook, "refused webhook URL")  # never echoed, in the answer or anywhere else
    answer = api.put("/api/destinations/acme?verify=false", json=destination(webhook))
    assert answer.status_code == 422, answer.text
    assert [d["field"] for d in answer.json()["error"]["details"]] == ["alerts.webhook_url"]
    assert api.get("/api/destinations/acme").status_code == 404


def test_a_public_https_webhook_is_accepted_in_azure_mode(api: httpx.Client, services: Services) -> None:
    url = "https://hooks.slack.com/services/T000/B000/" + "x" * 24
    secret_watch.register(url, "webhook URL")
    saved = api.put("/api/destinations/acme?verify=false", json=destination(url))
    assert saved.status_code == 201, saved.text
    assert saved.json()["alerts"]["webhook_origin"] == "https://hooks.slack.com"


def raised(services: Services) -> str:
    alert = new_alert("paused", "acme", datetime.now(UTC), {"by": "operator", "reason": "test"})
    assert raise_alert(services.control, alert)
    return alert_blob("acme", alert.day, "paused")


@pytest.mark.parametrize("webhook", ["https://169.254.169.254/latest/meta-data", "https://10.0.0.7/hook",
                                     "http://127.0.0.1:9/hook", "http://hooks.slack.com/services/T0/B0/x"])
def test_an_alert_webhook_url_setting_the_rules_refuse_stops_the_app_naming_it(settings: Settings,
                                                                                 webhook: str) -> None:
    secret_watch.register(webhook, "refused ALERT_WEBHOOK_URL")
    with pytest.raises(SettingsError, match=r"^invalid app settings: ALERT_WEBHOOK_URL: ") as refused:
        build_services(settings.model_copy(update={"alert_webhook_url": SecretStr(webhook)}))
    assert webhook not in str(refused.value)


@pytest.mark.parametrize("webhook", ["https://169.254.169.254/latest/meta-data", "https://10.0.0.7/hook",
                                     "http://127.0.0.1:9/hook"])
def test_an_alert_webhook_url_the_rules_refuse_is_never_sent_to(settings: Settings, webhook: str) -> None:
    """Checked again at each delivery (settings changed under a running process cannot get one through)."""
    secret_watch.register(webhook, "refused ALERT_WEBHOOK_URL")
    services = build_services(settings)
    services.settings = settings.model_copy(update={"alert_webhook_url": SecretStr(webhook)})
    name = raised(services)
    sweep_alerts(services)
    found = read_alert(services.control, name)
    assert found is not None
    delivery = found[0].deliveries["app"]
    assert delivery.state == "pending" and delivery.attempts == 1 and delivery.status_code is None
    assert delivery.last_error is not None and delivery.last_error.startswith("ALERT_WEBHOOK_URL is refused")
    assert delivery.origin is None and webhook not in delivery.last_error


@pytest.fixture
def local_receiver() -> Iterator[Receiver]:
    with receiver() as hook:
        yield hook


def test_a_public_name_that_resolves_to_a_private_address_is_not_sent_to(
        settings: Settings, host_routes: HostRoutes, local_receiver: Receiver) -> None:
    """hooks.example.com resolves to 127.0.0.1 (where a receiver listens): the name passes the URL's rules, its
    DNS answer does not, and nothing reaches the receiver."""
    port = int(local_receiver.url.split(":")[2].split("/")[0])
    host_routes.route("hooks.example.com", port)
    webhook = f"https://hooks.example.com{local_receiver.path}"
    secret_watch.register(webhook, "rebinding webhook URL")
    services = build_services(settings.model_copy(update={"alert_webhook_url": SecretStr(webhook)}))
    name = raised(services)
    sweep_alerts(services)
    found = read_alert(services.control, name)
    assert found is not None
    delivery = found[0].deliveries["app"]
    assert delivery.last_error == ("its host hooks.example.com resolves to a private, link-local or reserved "
                                   "address (127.0.0.1)")
    assert delivery.origin == "https://hooks.example.com"
    assert local_receiver.received == []


def test_a_destination_may_not_name_the_alert_signing_secret(api: httpx.Client, services: Services) -> None:
    body = {"account_name": "acmeexports", "container": "exports",
            "auth": {"type": "sas", "secret_name": "export-app-alert-signing"}}
    answer = api.put("/api/destinations/acme?verify=false", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "auth.secret_name"
