"""`make serve`: the app locally without Core Tools: the HTTP API under uvicorn, the export queue's consumer
and the timer in-process.

Settings come from local.settings.json's "Values" (or local.settings.json.example), as under `func start`;
variables already in the environment win. Control storage is whatever AzureWebJobsStorage says (Azurite,
started by `make azurite-start`, in the example), secrets go to the local development store unless
KEY_VAULT_URL is set. `UseDevelopmentStorage=true` is read as the Azurite on AZURITE_PORT (default 10000),
not the SDK's fixed port 10000; with AZURITE_PORT set, a connection string naming another local port is
refused rather than quietly used. The banner names the control storage endpoint (never a key). The queue
consumer exports each posted batch within seconds, with the code the queue trigger calls and host.json's
queue settings (`scripts.worker` runs more consumers in processes of their own); the timer sweeps on
EXPORT_SCHEDULE, exactly the code the timer trigger runs.
With LOCAL_INTAKE_KEY and/or LOCAL_ADMIN_KEY set, requests need the serving function's key, as in Azure
(scripts.functions_host).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from azure.storage.blob import ContainerClient
from starlette.types import ASGIApp

from scripts import local_azurite
from scripts.functions_host import FunctionKeyCheck, describe_local_keys, local_keys
from scripts.local_settings import apply_values, find_settings_file, read_values
from scripts.ncrontab import ScheduleError, parse_schedule
from scripts.scheduler import ScheduledJob
from scripts.worker import Consumer
from shared.api.app import create_api
from shared.errors import AppError
from shared.export.scheduled import run_scheduled
from shared.logging_setup import configure_logging
from shared.services import get_services
from shared.settings import Settings, SettingsError, get_settings

log = logging.getLogger("scripts.serve")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071, help="7071 is the port `func start` uses")
    parser.add_argument("--no-timer", action="store_true",
                        help="no timer and no queue consumer: run passes with POST /api/exports/run")
    return parser.parse_args(argv)


def scheduled_export() -> None:
    """What the timer trigger does (function_app.scheduled_export): the export pass, then retention; each logs
    its own summary."""
    run_scheduled(get_services())


def control_storage_endpoint(container: ContainerClient) -> str:
    """The control container's URL without its query (a connection string's SAS would be there)."""
    url = urlsplit(container.url)
    return urlunsplit((url.scheme, url.netloc.rpartition("@")[2], url.path.rstrip("/"), "", ""))


def crossed_port(endpoint: str, azurite_port: int) -> int | None:
    """The local port `endpoint` names when it is not AZURITE_PORT (a connection string written for another
    Azurite); None when they agree or the endpoint is not local."""
    url = urlsplit(endpoint)
    if url.hostname not in LOOPBACK_HOSTS:
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    return port if port != azurite_port else None


def control_storage_setting(settings: Settings) -> str:
    """The app setting control storage came from (the names the settings read, in their order)."""
    if settings.control_storage_account_url:
        return next((name for name in ("CONTROL_STORAGE_ACCOUNT_URL", "AzureWebJobsStorage__blobServiceUri")
                     if os.environ.get(name)), "CONTROL_STORAGE_ACCOUNT_URL")
    return next((name for name in local_azurite.CONTROL_STORAGE_SETTINGS if name in os.environ),
                "AzureWebJobsStorage")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    source = find_settings_file()
    apply_values(read_values(source))
    try:
        azurite_port = local_azurite.port_from_env()
    except local_azurite.AzuriteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # UseDevelopmentStorage=true means 127.0.0.1:10000 to the SDK: name the Azurite on AZURITE_PORT instead.
    read_as_azurite = local_azurite.use_azurite_port(os.environ, azurite_port)
    try:
        settings = get_settings()
        schedule = parse_schedule(settings.export_schedule)
    except SettingsError as exc:
        print(f"error: {exc} (from {source.name} or the environment)", file=sys.stderr)
        return 2
    except ScheduleError as exc:
        print(f"error: EXPORT_SCHEDULE: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_logging(settings.log_level)
    log.setLevel(logging.INFO)
    services = get_services()
    endpoint = control_storage_endpoint(services.control.container)
    setting = control_storage_setting(settings)
    if "AZURITE_PORT" in os.environ and (other := crossed_port(endpoint, azurite_port)) is not None:
        print(f"error: AZURITE_PORT={azurite_port}, but control storage is {endpoint} (port {other}), as "
              f"{setting} in {source.name} or the environment says: set it to "
              f"UseDevelopmentStorage=true (read as the Azurite on AZURITE_PORT), or run with "
              f"AZURITE_PORT={other}", file=sys.stderr)
        return 2
    try:
        services.control.ensure_container()
    except AppError as exc:
        print(f"error: {exc.message}. Control storage is {endpoint}: is Azurite running there? "
              f"(`make azurite-start`, with AZURITE_PORT={azurite_port})", file=sys.stderr)
        return 2

    store = f"Key Vault {settings.key_vault_url}" if settings.key_vault_url else (
        f"LOCAL DEVELOPMENT STORE {settings.local_secrets_path} (unencrypted; set KEY_VAULT_URL in Azure)"
    )
    print(f"Settings from {source.name} (environment variables override it)")
    if setting in read_as_azurite:
        azurite = local_azurite.inspect(azurite_port, local_azurite.azurite_root())
        how = (f"{setting}=UseDevelopmentStorage=true, read as the Azurite on AZURITE_PORT={azurite_port}: "
               f"{azurite.owner()}")
    else:
        how = f"from {setting}"
    print(f"Control storage: {endpoint} ({how})")
    print(f"Secrets: {store}")
    timer = consumer = None
    if args.no_timer:
        print("Timer and queue consumer: off (--no-timer); run a pass with POST /api/exports/run")
    else:
        upcoming = ", ".join(t.strftime("%H:%M:%S") for t in schedule.upcoming(datetime.now(UTC), 3))
        print(f"Timer: EXPORT_SCHEDULE '{schedule.expression}' (UTC); next runs {upcoming}")
        timer = ScheduledJob(schedule, scheduled_export)
        timer.start()
        consumer = Consumer.start_for(services)
        print(consumer.describe() if consumer is not None else
              "Queue consumer: off (control storage's connection names no queue service): the timer exports")
    print(f"API: http://{args.host}:{args.port}/api/  (interactive docs: http://{args.host}:{args.port}/api/docs)")
    keys = local_keys(settings)
    print(describe_local_keys(keys), flush=True)
    app: ASGIApp = create_api(get_services)
    if keys:
        app = FunctionKeyCheck(app, keys)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", lifespan="off")
    finally:
        if consumer is not None:
            consumer.stop()
        if timer is not None:
            timer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
