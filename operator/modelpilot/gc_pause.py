"""Pause Python's cyclic garbage collector while a large, acyclic answer is parsed.

Parsing the advisor's Prometheus answers (tens of MB of JSON: millions of small lists) makes
the collector run its full passes over an ever larger heap again and again, for nothing:
none of it is in a cycle. That was a third of an evaluation's reading time at 500 models.
The pause is process-wide, so it nests (the outermost pause resumes collection) and lasts
only as long as the parse; cycles made elsewhere meanwhile are collected after it.
"""

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_resume = False  # whether collection was on when the outermost pause began


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
