"""The cyclic garbage collector paused around a parse that makes many objects holding no cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic GC for the block; reference counting still frees every object that holds no cycle.

    Both parsers build objects by the thousand: CSV encoding parses records that live only until their rows
    are written, intake parses a JSON array into one big tree that stays alive until it is staged. Left on,
    the cyclic GC would scan them again and again (a fifth of CSV encoding's time) and find nothing to free.
    Process-wide, so only the thread that paused it resumes it.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
