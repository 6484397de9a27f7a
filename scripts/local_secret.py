"""DEVELOPMENT ONLY: put a secret into the local secret store, to try a destination's `secret_name` locally.

    .venv/bin/python -m scripts.azurite_sas acme-exports | .venv/bin/python -m scripts.local_secret put acme-sas
    .venv/bin/python -m scripts.local_secret put acme-sas     # at a terminal: asks for the value, not echoed
    .venv/bin/python -m scripts.local_secret delete acme-sas

The local stand-in for `az keyvault secret set`. The value is read from stdin, never from the command line,
so it lands in no shell history and no process list, and it is never printed. The store is the file the app
uses without Key Vault: LOCAL_SECRETS_PATH from the environment or local.settings.json (as `make serve`
reads them; default .local/dev-secrets.json). With KEY_VAULT_URL set the app reads Key Vault instead, so this
refuses to run. The name follows the rules a destination's `secret_name` must meet: Key Vault's (letters,
digits, hyphens), not under `export-dest-` (the app's own secrets), and under CUSTOMER_SECRET_PREFIX when
that is set.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from scripts.local_settings import merged_values
from shared.secrets.local_store import LocalSecretStore
from shared.secrets.names import APP_SECRET_PREFIX, check_secret_name, is_app_secret_name
from shared.secrets.store import SecretStoreError

DEFAULT_PATH = ".local/dev-secrets.json"


class SecretCommandError(RuntimeError):
    """Why the command refused, in words that say what to do."""


def checked_name(name: str, customer_prefix: str) -> str:
    """A name a destination may give as `secret_name`, or SecretCommandError saying why not."""
    try:
        check_secret_name(name)
    except ValueError as exc:
        raise SecretCommandError(str(exc)) from None
    if is_app_secret_name(name):
        raise SecretCommandError(f"names starting '{APP_SECRET_PREFIX}' are the secrets the app writes for "
                                 "destinations, and no destination may name one: choose another name")
    if customer_prefix and not name.startswith(customer_prefix):
        raise SecretCommandError(f"CUSTOMER_SECRET_PREFIX is '{customer_prefix}': a destination may only name "
                                 f"secrets starting with it, e.g. '{customer_prefix}{name}'")
    return name


def read_value(name: str) -> str:
    """The secret from stdin: asked for without echo at a terminal, else everything piped in, minus the final
    line end (what `echo`, `az ... -o tsv` and scripts.azurite_sas add)."""
    value = getpass.getpass(f"value of secret '{name}' (not echoed): ") if sys.stdin.isatty() else sys.stdin.read()
    value = value.removesuffix("\n").removesuffix("\r")
    if not value.strip():
        raise SecretCommandError("the value read from stdin is empty: pipe the secret in, or type it when asked")
    return value


def open_store(settings: dict[str, str]) -> LocalSecretStore:
    if (settings.get("KEY_VAULT_URL") or "").strip():
        raise SecretCommandError(
            f"KEY_VAULT_URL is set, so the app reads secrets from Key Vault ({settings['KEY_VAULT_URL'].strip()}), "
            "not the local store: put the secret there (`az keyvault secret set`, or the portal)"
        )
    return LocalSecretStore(Path(settings.get("LOCAL_SECRETS_PATH") or DEFAULT_PATH))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    put = commands.add_parser("put", help="store NAME with the value read from stdin (replacing any earlier one)")
    put.add_argument("name")
    delete = commands.add_parser("delete", help="remove NAME")
    delete.add_argument("name")
    args = parser.parse_args(argv)
    settings = merged_values()
    try:
        name = checked_name(args.name, settings.get("CUSTOMER_SECRET_PREFIX", "").strip())
        if args.command == "delete":
            open_store(settings).delete_secret(name)
            print(f"deleted secret '{name}' from the local development store (if it was there)")
            return 0
        store = open_store(settings)
        store.set_secret(name, read_value(name))
    except (SecretCommandError, SecretStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"stored secret '{name}' in the local development store {store.path}; a destination names it in "
          f'its auth as "secret_name": "{name}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
