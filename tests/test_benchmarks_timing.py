import os
import time

import pytest

from benchmarks.common import time_in_processes


def sleeper(seconds: float, parent: int):
    """A timed callable that must be built in a child process."""
    if os.getpid() == parent:
        raise AssertionError("built in the parent process")
    return lambda: time.sleep(seconds)


def broken(message: str):
    raise ValueError(message)


def test_each_callable_is_timed_in_its_own_process_in_blocks():
    parent = os.getpid()
    stats = time_in_processes({"short": (sleeper, {"seconds": 0.002, "parent": parent}),
                               "long": (sleeper, {"seconds": 0.02, "parent": parent})}, rounds=3, block=4, warmup=1)
    assert stats["short"]["iters"] == stats["long"]["iters"] == 12
    assert 2 <= stats["short"]["p50"] < stats["long"]["p50"] and stats["long"]["min"] >= 20


def test_a_failing_factory_is_reported_with_its_name():
    with pytest.raises(RuntimeError, match="bad: ValueError: no model here"):
        time_in_processes({"bad": (broken, {"message": "no model here"})}, rounds=1, block=1)
    with pytest.raises(ValueError, match="rounds and block"):
        time_in_processes({}, rounds=0)
