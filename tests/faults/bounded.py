"""One bounded call for the parser fault tests: a result or one one-line EdgevidError, within time and memory."""

import gc
import time
import tracemalloc

from edgevid.errors import EdgevidError


def bounded_call(fn, *args, seconds: float = 2.0, peak_mb: float = 64.0):
    """fn(*args) -> ('ok', result) or ('error', message); asserts time, peak Python allocation and a one-line error.

    The cyclic garbage collector is off during the call: a full collection of the heap the earlier tests of the
    worker left (slow under tracemalloc) would be timed as the parser's: in the full suite one override parse once
    took 1.2 s, where 1500 of them alone take at most 0.1 s each."""
    collecting = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        outcome = ("ok", fn(*args))
    except EdgevidError as exc:
        outcome = ("error", str(exc))
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if collecting:
            gc.enable()
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert peak < peak_mb * 2**20, f"allocated {peak / 2**20:.0f} MiB"
    if outcome[0] == "error":
        assert outcome[1] and "\n" not in outcome[1].strip(), outcome[1]
    return outcome
