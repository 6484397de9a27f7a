"""Create a container in the local Azurite and print a read+write container SAS for it (24 hours).

    SAS=$(.venv/bin/python -m scripts.azurite_sas acme-exports)

The Azurite on AZURITE_PORT (default 10000), as for `make demo` and `make serve`; `--port` overrides it.

The local stand-in for what a customer does in the Azure portal or with
`az storage container generate-sas --permissions rw`. Azurite's account key is public; this is for local use.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import UTC, datetime

from azure.core.exceptions import ResourceExistsError, ServiceRequestError
from azure.storage.blob import BlobServiceClient

from scripts.demo import container_sas
from scripts.local_azurite import AzuriteError, account_url, connection_string, port_from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("container")
    parser.add_argument("--port", type=int, default=None, help="Azurite's port (default: AZURITE_PORT, or 10000)")
    parser.add_argument("--no-create", action="store_true", help="only print a SAS; do not create the container")
    args = parser.parse_args(argv)
    try:
        port = args.port or port_from_env()
    except AzuriteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    connection = connection_string(port)
    if not args.no_create:
        try:
            with contextlib.suppress(ResourceExistsError):
                BlobServiceClient.from_connection_string(connection, retry_total=1).create_container(args.container)
        except ServiceRequestError:
            print(f"error: nothing answers at {account_url(port)} (AZURITE_PORT={port}): start this checkout's "
                  "Azurite with `make azurite-start`, with the same AZURITE_PORT", file=sys.stderr)
            return 1
    print(container_sas(connection, args.container, datetime.now(UTC)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
