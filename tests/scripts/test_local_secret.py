"""scripts.local_secret: a secret put into the local store from stdin, then named by a destination."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import ContainerClient

from shared.settings import Settings
from tests.scripts.local_env import local_env, script
from tests.support.azurite import Azurite
from tests.support.sas import container_sas


def stored(path: Path) -> dict[str, str]:
    return dict(json.loads(path.read_text())["secrets"])


def test_put_reads_the_value_from_stdin_stores_it_0600_and_never_prints_it(tmp_path: Path) -> None:
    env = local_env(tmp_path)
    value = f"sv=2022-11-02&sr=c&sp=rw&sig={uuid.uuid4().hex}"
    done = script("scripts.local_secret", "put", "acme-sas", env=env, stdin=value + "\n")
    assert done.returncode == 0, done.stderr
    path = Path(env["LOCAL_SECRETS_PATH"])
    assert stored(path) == {"acme-sas": value}  # the final line end is not part of it
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "stored secret 'acme-sas'" in done.stdout and '"secret_name": "acme-sas"' in done.stdout
    assert value not in done.stdout + done.stderr and uuid.UUID(value[-32:]).hex not in done.stdout + done.stderr

    again = script("scripts.local_secret", "delete", "acme-sas", env=env)
    assert again.returncode == 0 and stored(path) == {}


@pytest.mark.parametrize(("name", "settings", "stdin", "message"), [
    ("export-dest-acme-0123456789ab", {}, "x", "names starting 'export-dest-' are the secrets the app writes"),
    ("bad_name", {}, "x", "is not a valid Key Vault secret name"),
    ("acme-sas", {"CUSTOMER_SECRET_PREFIX": "cust-"}, "x", "e.g. 'cust-acme-sas'"),
    ("acme-sas", {"KEY_VAULT_URL": "https://acme.vault.azure.net"}, "x", "reads secrets from Key Vault (https://acme.vault.azure.net)"),
    ("acme-sas", {}, "\n", "the value read from stdin is empty"),
])
def test_put_refuses_what_a_destination_could_not_use_saying_why(
    tmp_path: Path, name: str, settings: dict[str, str], stdin: str, message: str
) -> None:
    env = local_env(tmp_path, **settings)
    done = script("scripts.local_secret", "put", name, env=env, stdin=stdin)
    assert done.returncode == 1
    assert message in done.stderr
    path = Path(env["LOCAL_SECRETS_PATH"])
    assert not path.exists() or stored(path) == {}


def test_a_destination_names_the_secret_put_locally(
    api: httpx.Client, settings: Settings, azurite: Azurite, fresh_container: ContainerClient, tmp_path: Path
) -> None:
    """The README's way to try `secret_name` locally: the SAS piped into the store, then named in the PUT."""
    env = local_env(tmp_path, LOCAL_SECRETS_PATH=str(settings.local_secrets_path))
    sas = container_sas(fresh_container.container_name)
    assert script("scripts.local_secret", "put", "acme-sas", env=env, stdin=sas + "\n").returncode == 0
    body = {"endpoint": azurite.account_url, "container": fresh_container.container_name,
            "auth": {"type": "sas", "secret_name": "acme-sas"}}
    saved = api.put("/api/destinations/acme-named", json=body)
    assert saved.status_code == 201, saved.text
    assert saved.json()["auth"]["secret_name"] == "acme-sas"
    assert saved.json()["auth"]["sas"]["permission_names"] == ["read", "write"]
    tested = api.post("/api/destinations/acme-named/test")
    assert tested.status_code == 200 and tested.json()["checks"]["write"] is True
