"""Create a container in the local Azurite and print a read+write container SAS for it (24 hours).

    SAS=$(.venv/bin/python -m scripts.azurite_sas acme-exports)

The local stand-in for what a customer does in the Azure portal or with
`az storage container generate-sas --permissions rw`. Azurite's account key is public; this is for local use.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from datetime import UTC, datetime

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from scripts.demo import azurite_connection_string, container_sas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("container")
    parser.add_argument("--port", type=int, default=int(os.environ.get("AZURITE_PORT", "10000")))
    parser.add_argument("--no-create", action="store_true", help="only print a SAS; do not create the container")
    args = parser.parse_args(argv)
    connection_string = azurite_connection_string(args.port)
    if not args.no_create:
        with contextlib.suppress(ResourceExistsError):
            BlobServiceClient.from_connection_string(connection_string).create_container(args.container)
    print(container_sas(connection_string, args.container, datetime.now(UTC)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
