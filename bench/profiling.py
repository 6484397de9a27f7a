"""`make bench BENCH_ARGS="--profile DIR"`: sample each measured run with py-spy (every thread).

The export pass does its work in worker threads (batches, gzip, uploads), which an in-process
profiler started on the main thread would not see. py-spy samples the whole process from outside
and writes "collapsed" stacks (`frame;frame;... count`); `summarize` turns them into two short
tables: where the samples were (self) and what they were under (inclusive).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path

RATE = 200  # samples per second
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: `pip install -r requirements-dev.txt` (make install does)")
    return found


def profiled_command(command: list[str], output: Path) -> list[str]:
    """`command` under py-spy, writing collapsed stacks of every thread to `output`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return [py_spy(), "record", "--format", "raw", "--rate", str(RATE), "--nonblocking", "--threads",
            "--output", str(output), "--", *command]


def summarize(collapsed: Path, top: int = 30) -> str:
    """The `top` frames by self samples and by inclusive samples, as text."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # "name (file:line)" -> "name (file)": one row per function, whatever line was running.
        frames = [_LINE.sub(")", frame) for frame in stack.split(";") if not frame.startswith("thread (")]
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            under[frame] += count
    lines = [f"{total} samples at {RATE}/s, all threads ({total / RATE:.1f} s on CPU or in I/O)", "", "self:"]
    lines += [f"{100 * n / total:6.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:6.1f}%  {frame}" for frame, n in under.most_common(top)]
    return "\n".join(lines) + "\n"
