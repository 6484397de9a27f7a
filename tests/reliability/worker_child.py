"""An export worker in its own process, for tests that kill workers or run several at once.

    python -m tests.reliability.worker_child [--stall-at-commit N --marker PATH]

Settings come from the environment, as in the Functions host. With --stall-at-commit the worker, just
before committing its Nth file (blocks staged, not yet committed), touches PATH and hangs until killed.
Prints the pass summary as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from shared.export.runner import Hooks, run_export_pass
from shared.services import build_services
from shared.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stall-at-commit", type=int, default=0)
    parser.add_argument("--marker", type=Path)
    args = parser.parse_args()
    commits = 0

    def stall(name: str) -> None:
        nonlocal commits
        commits += 1
        if commits == args.stall_at_commit:
            args.marker.write_text(name, encoding="utf-8")
            while True:  # mid-upload: staged blocks, no commit; the test SIGKILLs us here
                time.sleep(60)

    hooks = Hooks(before_commit=stall if args.stall_at_commit else None)
    summary = run_export_pass(build_services(load_settings()), hooks=hooks)
    print(json.dumps(summary.to_json()), flush=True)


if __name__ == "__main__":
    main()
