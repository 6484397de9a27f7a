"""`python -m scripts.worker`: an export queue consumer in a process of its own, as one more Functions instance
would be in Azure: it takes the export queue's messages and exports their units with the code the queue trigger
calls (`shared.export.queued`), following host.json's queue settings. Run several to play several instances;
`make serve` runs one in-process.

Settings as `make serve` reads them (local.settings.json, or its example; the environment wins), with
`UseDevelopmentStorage=true` read as the Azurite on AZURITE_PORT. Stops on SIGTERM or Ctrl-C, after the
messages in hand: a message it was killed in the middle of reappears once its hold ends.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

from scripts import local_azurite
from scripts.local_settings import apply_values, find_settings_file, read_values
from shared.control.export_queue import ExportQueue
from shared.export.queued import QueueOptions, run_consumer
from shared.logging_setup import configure_logging
from shared.services import Services, get_services
from shared.settings import SettingsError, get_settings

HOST_JSON = Path(__file__).resolve().parents[1] / "host.json"
log = logging.getLogger("scripts.worker")


@dataclass
class Consumer:
    """A queue consumer running in a thread of this process."""

    queue: ExportQueue
    options: QueueOptions
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @classmethod
    def start_for(cls, services: Services, hold_seconds: int | None = None) -> Consumer | None:
        """Start consuming, with host.json's settings; None when there is no export queue."""
        queue = services.export_queue
        if queue is None:
            return None
        options = QueueOptions.from_host_json(HOST_JSON)
        if hold_seconds is not None:
            options = replace(options, hold_seconds=hold_seconds)
        consumer = cls(queue, options)
        consumer.thread = threading.Thread(target=run_consumer, name="queue-consumer", daemon=True,
                                           args=(services, queue, consumer.options, consumer.stop_event))
        consumer.thread.start()
        return consumer

    def describe(self) -> str:
        o = self.options
        return (f"Queue consumer: '{self.queue.name}' ({o.batch_size} messages at once, polled every "
                f"{o.max_polling_interval_seconds:g} s at most; poisoned after {o.max_dequeue_count} failures)")

    def stop(self, timeout: float = 60.0) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hold-seconds", type=int, default=None, metavar="N",
                        help="how long a message in hand stays invisible, renewed at a third of it (default 60): "
                        "a worker killed mid-export lets its messages reappear this soon")
    args = parser.parse_args(argv)
    source = find_settings_file()
    apply_values(read_values(source))
    try:
        local_azurite.use_azurite_port(os.environ, local_azurite.port_from_env())
        settings = get_settings()
    except (SettingsError, local_azurite.AzuriteError) as exc:
        print(f"error: {exc} (from {source.name} or the environment)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_logging(settings.log_level)
    consumer = Consumer.start_for(get_services(), args.hold_seconds)
    if consumer is None:
        print("error: control storage's connection names no queue service: there is no export queue to consume",
              file=sys.stderr)
        return 2
    print(f"worker {os.getpid()}: {consumer.describe()}", flush=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        consumer.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while consumer.thread is not None and consumer.thread.is_alive():
        consumer.thread.join(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
